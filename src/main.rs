fn main() {
    std::process::exit(mailrun::run::main());
}
