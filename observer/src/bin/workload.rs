//! `lazyvma-workload SCENARIO [N]`: processes of known anon_vma layout for tests and demos.
fn main() {
    eprintln!("lazyvma-workload: no scenarios yet");
    std::process::exit(2);
}
