//! The page of a real `vouch-fleet serve`, fetched over HTTP and rendered by headless Chromium
//! (Debian `chromium`): the overview lists the device with its status and staleness and links
//! to its page, which shows the verdict history with each reason's check, event and PCR; a
//! reason carrying markup is shown as text, never run (escaped, and scripts are forbidden by
//! the Content-Security-Policy).

mod serve_support;

use serve_support::{free_port_besides, Fleet, Settings};
use std::process::Command;
use std::time::Duration;
use vouch_fleet::registry::{now_ms, DeviceStatus, NewDevice, VerdictRecord};

const DEVICE: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

fn chromium_dom(url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium must be installed (apt-get install chromium; scripts/install-deps.sh)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn page_renders_devices_and_reasons_in_chromium() {
    let port_cell = std::cell::Cell::new(0u16);
    let fleet = Fleet::start_with(Settings::default(), &[], |text, dir| {
        let port = free_port_besides(dir);
        port_cell.set(port);
        format!("{text}\n[http]\nlisten = \"127.0.0.1:{port}\"\n")
    });
    let port = port_cell.get();
    fleet.wait_log("HTTP API listening", Duration::from_secs(10));
    let reg = fleet.registry();
    let t0 = now_ms();
    reg.upsert_device(
        &NewDevice {
            id: DEVICE,
            ek_public: b"ek",
            ak_public: b"ak",
            tls_public: b"tls",
            cert_serial: "4000000000000000000000000000cdcd",
        },
        t0,
    )
    .unwrap();
    reg.store_verdict(
        &VerdictRecord {
            device_id: DEVICE,
            challenged_ms: t0,
            trusted: true,
            reasons: &[],
        },
        t0 + 40,
    )
    .unwrap();
    let reasons = [
        "policy.kernel_cmdline: <script>document.title='pwned'</script> not allowed (event 41) (PCR 9)"
            .to_string(),
        "eventlog.pcr7: sha256 PCR7 replays to aa but the quote has bb".to_string(),
    ];
    let id = reg
        .store_verdict(
            &VerdictRecord {
                device_id: DEVICE,
                challenged_ms: t0 + 100,
                trusted: false,
                reasons: &reasons,
            },
            t0 + 150,
        )
        .unwrap();
    reg.set_status(DEVICE, DeviceStatus::Untrusted, t0 + 150)
        .unwrap();

    // Plain HTTP fetch: the HTML and its security header.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (csp, html) = rt.block_on(async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/devices/{DEVICE}"))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        (csp, r.text().await.unwrap())
    });
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");

    // Rendered by a browser.
    let dom = chromium_dom(&format!("http://127.0.0.1:{port}/"));
    assert!(
        dom.contains(&format!("href=\"/devices/{DEVICE}\"")),
        "{dom}"
    );
    assert!(dom.contains("class=\"untrusted\">untrusted<"), "{dom}");
    assert!(dom.contains("1 untrusted"), "{dom}");
    let dom = chromium_dom(&format!("http://127.0.0.1:{port}/devices/{DEVICE}"));
    assert!(dom.contains(&format!("#{id}")), "{dom}");
    assert!(
        dom.contains("<code>policy.kernel_cmdline</code> event 41 PCR 9: "),
        "{dom}"
    );
    assert!(dom.contains("<code>eventlog.pcr7</code> PCR 7: "), "{dom}");
    // The markup in the reason is text: no script element, the title unchanged.
    assert!(dom.contains("&lt;script&gt;document.title"), "{dom}");
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains("<title>Vouch device</title>"), "{dom}");
}
