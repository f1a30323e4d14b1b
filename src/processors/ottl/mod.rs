//! OTTL-style conditions, statements and converters, and the item views they are evaluated on,
//! shared by the `filter` and `transform` processors and the `routing` and `count` connectors.

pub mod expr;
pub mod functions;
pub mod items;
pub mod statement;
