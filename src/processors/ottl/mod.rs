//! OTTL-style conditions and the item views they are evaluated on, shared by the processors that
//! take conditions (`filter`).

pub mod expr;
pub mod items;
pub mod statement;
