//! The ecelerity configuration language used by `eccluster.conf` and node configuration files:
//! lexer ([`lexer`]), grammar ([`parser`]), values ([`value`]) and the merged tree with the
//! console `config` family ([`tree`]) and per-session transactions ([`txn`]). Errors print as `file:line:col: message`.

pub mod lexer;
pub mod parser;
pub mod tree;
pub mod txn;
pub mod value;

pub use parser::{parse, parse_value, Item, SyntaxError};
pub use tree::{ConfError, Config, OptEntry, Scope, Seg};
pub use txn::Transactions;
pub use value::Value;
