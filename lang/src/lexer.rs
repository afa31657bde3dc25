//! Source text to tokens (to be written by the front-end work).
