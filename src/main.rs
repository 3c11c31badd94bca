fn main() -> std::process::ExitCode {
    pitwall_flow::cli::main()
}
