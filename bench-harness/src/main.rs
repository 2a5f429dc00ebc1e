//! The `ringbench` binary: everything lives in the library; this only picks the allocator and
//! hands the exit code back to the OS.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(ringbench::cli::main());
}
