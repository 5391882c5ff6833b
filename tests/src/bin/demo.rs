//! The local demo: every function of the suite on its own story, against a local AWS (the
//! extended moto test bed), local sample apps and the real function binaries, each verdict
//! printed with its reasons. Exits non-zero when any verdict was not the expected one.

use deploy_guard_tests::demos;

#[tokio::main]
async fn main() {
    let mut results = Vec::new();
    println!("═══ 1. The smoke-test hook: a release is tested on its test listener before traffic moves\n");
    results.push(("smoke-test hook", demos::smoke_hook::run().await));
    println!("\n═══ 2. The pipeline: the image gate before deploying, the bake timer after\n");
    results.push(("image gate and bake timer", demos::pipeline::run().await));
    println!("\n═══ 3. The alarm-driven rollback router: a release passes its smoke test, then its alarm fires\n");
    results.push(("alarm-rollback router", demos::alarm_rollback::run().await));
    println!("\n═══ Summary");
    for (name, ok) in &results {
        println!(
            "  {} {name}",
            if *ok { "as expected:" } else { "UNEXPECTED: " }
        );
    }
    if results.iter().any(|(_, ok)| !ok) {
        std::process::exit(1);
    }
    println!("Every verdict was the expected one.");
}
