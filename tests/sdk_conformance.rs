//! DingTalk's official SDKs (PyPI `dingtalk-sdk`, `alibabacloud-dingtalk`), unchanged, against
//! our fake DingTalk: `../shared/tools/sdk-conformance`. The tool must be there; no skipping.
#![cfg(feature = "fake")]

use std::path::Path;
use std::time::Duration;

use dingtalk_auth_proxy::fake::FakeDingTalk;

/// Every check of the official SDKs passes against the fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_accept_the_fake() {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/sdk-conformance");
    assert!(
        tool.exists(),
        "sdk-conformance not found at {}",
        tool.display()
    );
    let fake = FakeDingTalk::new().start().await.expect("fake starts");
    let base = fake.base_url();
    let out = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new("bash")
            .arg(&tool)
            .args(["--base", &base])
            .args(["--mint", &format!("{base}/_fake/mint?userid={{userid}}")])
            .args(["--app-key", &fake.app_key()])
            .args(["--app-secret", &fake.app_secret()])
            .args(["--corp-id", &fake.corp_id()])
            .args(["--userid", "zhangsan"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sdk-conformance finished in time")
    .expect("sdk-conformance runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "sdk-conformance failed:\n{text}");
    assert!(text.contains("7 passed, 0 failed"), "{text}");
}
