//! One module per subcommand of the `longformer` binary.

pub mod bench;
pub mod convert;
pub mod encode;
pub mod eval;
pub mod prepare;
pub mod train;
