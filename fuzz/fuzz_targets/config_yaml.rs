//! Config loading on arbitrary YAML: parse, merge and validate return a config or an
//! error naming the key (what `quarantine run` turns into exit 64); nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tree) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return;
    };
    if let Ok(config) = Config::from_value(tree) {
        // What `run` does next with a valid config.
        let _ = config.compile_pipelines();
        let _ = config.listen_addr();
    }
});
