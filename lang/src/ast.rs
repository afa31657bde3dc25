//! The parsed syntax tree (to be written by the front-end work).
#[derive(Debug, Default)]
pub struct Module {}
