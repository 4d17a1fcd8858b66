//! Prints the generated kernel of a model spec given as JSON on stdin: `--cuda` or `--c`.
use std::io::Read;

fn main() {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .expect("read stdin");
    let spec = spikeforge::spec::ModelSpec::from_json(&text).unwrap_or_else(|e| panic!("{e}"));
    let dialect = if std::env::args().any(|a| a == "--c") {
        spikeforge::codegen::Dialect::C
    } else {
        spikeforge::codegen::Dialect::Cuda
    };
    match spikeforge::codegen::generate_from_spec(&spec, dialect) {
        Ok(k) => print!("{}", k.source),
        Err(d) => {
            eprintln!("{d}");
            std::process::exit(1);
        }
    }
}
