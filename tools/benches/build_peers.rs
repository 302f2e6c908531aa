//! Not a benchmark. Cargo builds a package's binaries only for that
//! package's own tests and benchmarks, and the peers are the tools'
//! binaries: this empty benchmark is why `cargo bench`, from the
//! repository root, builds `peer-tokio`, `peer-monoio` and the others in
//! release, so that `benches/echo.rs` can measure them beside the lessons
//! (whose own package builds them for that benchmark).

fn main() {}
