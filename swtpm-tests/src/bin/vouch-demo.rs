//! `make demo`: Vouch's main job end to end on a private swtpm, step by step, exiting non-zero at
//! the first step that fails.

use std::process::{Command, ExitCode};
use std::time::Duration;
use swtpm_tests::stack::FleetStack;
use swtpm_tests::{bin_path, testdata, Swtpm};
use vouch_attest::errors::chain;

/// The firmware log the demo's swtpm "boots": a real RHEL 9 machine with Secure Boot.
const BOOT_LOG: &str = "eventlogs/keylime_mb_binary_bios_measurements-secureboot.bin";

struct Demo {
    step: usize,
}

impl Demo {
    fn run(&mut self, title: &str, cmd: &mut Command) -> Result<String, String> {
        self.step += 1;
        println!("\n==> [{}] {title}", self.step);
        let out = cmd
            .env("TSS2_LOG", "all+none")
            .output()
            .map_err(|e| format!("{title}: cannot start: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!("{title}: failed with {}", out.status));
        }
        Ok(stdout)
    }
}

fn main() -> ExitCode {
    match demo() {
        Ok(()) => {
            println!("\nDEMO OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nDEMO FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<(), String> {
    let mut d = Demo { step: 0 };
    println!("==> starting a private swtpm (EK certificates from a local CA)");
    let tpm = Swtpm::start().map_err(|e| chain(&e))?;
    let log = testdata().join(BOOT_LOG);
    let events = std::fs::read(&log)
        .map_err(|e| format!("{}: {e}", log.display()))
        .and_then(|b| tpm.boot_from_log(&b).map_err(|e| chain(&e)))?;
    println!("==> booted it: extended {events} events of a real firmware log ({BOOT_LOG})");
    let tcti = tpm.tcti();
    let state = tpm.dir().join("agent-state");
    let out = tpm.dir().join("quote");
    let agent = bin_path("vouch-agent");
    let fleet = bin_path("vouch-fleet");
    let base = |c: &mut Command| {
        c.arg("--tcti").arg(&tcti).arg("--state-dir").arg(&state);
    };

    let mut c = Command::new(&agent);
    base(&mut c);
    d.run(
        "TPM identity (vouch-agent tpm info)",
        c.args(["tpm", "info"]),
    )?;

    let nonce = hex_nonce();
    let mut c = Command::new(&agent);
    base(&mut c);
    d.run(
        "quote PCRs 0-7 over a fresh nonce (vouch-agent quote)",
        c.args([
            "quote",
            "--nonce",
            &nonce,
            "--pcrs",
            "sha256:0,1,2,3,4,5,6,7",
            "--out",
        ])
        .arg(&out),
    )?;

    d.run(
        "verify the quote (vouch-fleet quote verify)",
        Command::new(&fleet)
            .args(["quote", "verify", "--ak"])
            .arg(out.join("ak.pub.pem"))
            .arg("--quote")
            .arg(out.join("quote.msg"))
            .arg("--sig")
            .arg(out.join("quote.sig"))
            .arg("--pcrs")
            .arg(out.join("quote.pcrs"))
            .args(["--nonce", &nonce]),
    )?;

    d.run(
        "independent check (tpm2_checkquote, its output is long)",
        Command::new("tpm2_checkquote")
            .arg("-u")
            .arg(out.join("ak.pub.pem"))
            .arg("-m")
            .arg(out.join("quote.msg"))
            .arg("-s")
            .arg(out.join("quote.sig"))
            .arg("-f")
            .arg(out.join("quote.pcrs"))
            .args(["-g", "sha256", "-q", &nonce]),
    )?;

    println!("\n==> fleet: vouch-fleet init (CA, broker/claim certificates, CRL, ACL), mosquitto, vouch-fleet serve");
    let trust = [tpm.ca_root_cert(), tpm.ca_dir().join("issuercert.pem")];
    let fleet = FleetStack::start(&trust, |t| {
        t.replace("jitter_secs = 30", "jitter_secs = 0").replace(
            "revoke_on_untrusted = false",
            "revoke_on_untrusted = false\ndefault_policy = \"known-good\"",
        )
    })
    .map_err(|e| chain(&e))?;
    let policy = fleet
        .record_policy("known-good", &log)
        .map_err(|e| chain(&e))?;
    fleet.reload_server().map_err(|e| chain(&e))?;
    println!(
        "    reference policy recorded from a known-good boot: {} (vouch-fleet policy record)",
        policy.display()
    );
    println!(
        "    broker on localhost:{}, fleet dir {}",
        fleet.port(),
        fleet.dir().display()
    );
    let id = device_id(&agent, &tcti, &state)?;
    let config = fleet
        .agent_config(&tpm, &state, &log)
        .map_err(|e| chain(&e))?;
    println!("\n==> device: vouch-agent run (enrolls with its EK certificate, then attests over mTLS MQTT)");
    let agent_proc = fleet.start_agent(&config).map_err(|e| chain(&e))?;
    let shown = fleet.wait_device(&id, Duration::from_secs(60), |v| {
        v["verdicts"][0]["trusted"].is_boolean()
    });
    let agent_log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    for line in agent_log.lines().filter(|l| l.contains("INFO")) {
        println!(
            "    agent: {}",
            line.split("INFO").nth(1).unwrap_or(line).trim()
        );
    }
    shown.map_err(|e| chain(&e))?;
    agent_proc.stop();
    provision_volume(&mut d, &agent, &tcti, &state, &fleet)?;
    let out = fleet.cli(&["device", "show", &id]);
    print!("{}", out.stdout);
    let trusted = fleet
        .device(&id)
        .is_some_and(|v| v["verdicts"][0]["trusted"] == true);
    println!(
        "\nverdict for device {id}: {}",
        if trusted { "TRUSTED" } else { "UNTRUSTED" }
    );
    if !trusted {
        return Err("the device was not trusted".into());
    }
    Ok(())
}

/// Seals a fresh disk secret to PCR 7 and writes a LUKS2 volume with it, the recovery passphrase
/// escrowed to the fleet; then proves the sealed secret opens it.
fn provision_volume(
    d: &mut Demo,
    agent: &std::path::Path,
    tcti: &str,
    state: &std::path::Path,
    fleet: &FleetStack,
) -> Result<(), String> {
    let escrow_key = fleet.dir().join("escrow.key.pem");
    let escrow_pub = fleet.dir().join("escrow.pub.pem");
    d.run(
        "fleet escrow key (vouch-fleet escrow keygen)",
        Command::new(bin_path("vouch-fleet"))
            .args(["escrow", "keygen", "--key"])
            .arg(&escrow_key)
            .arg("--public")
            .arg(&escrow_pub),
    )?;
    let image = state.with_file_name("volume.img");
    let agent_cmd = |args: &[&str]| {
        let mut c = Command::new(agent);
        c.args(["--tcti", tcti, "--state-dir"])
            .arg(state)
            .args(args);
        c
    };
    let img = image.to_string_lossy().into_owned();
    let pub_pem = escrow_pub.to_string_lossy().into_owned();
    d.run(
        "seal a disk secret to PCR 7 and write a LUKS2 volume (vouch-agent volume create)",
        &mut agent_cmd(&[
            "volume",
            "create",
            "--device",
            &img,
            "--size",
            "32M",
            "--pcrs",
            "sha256:7",
            "--escrow-key",
            &pub_pem,
            "--label",
            "demo",
            "--recovery-kdf-memory",
            "65536",
        ]),
    )?;
    d.run(
        "cryptsetup reads it (cryptsetup luksDump)",
        Command::new("cryptsetup").args(["luksDump", &img]),
    )?;
    d.run(
        "unseal and open the keyslot (vouch-agent volume unlock --dry-run)",
        &mut agent_cmd(&[
            "volume",
            "unlock",
            "--device",
            &img,
            "--name",
            "demo",
            "--dry-run",
        ]),
    )?;
    Ok(())
}

fn device_id(
    agent: &std::path::Path,
    tcti: &str,
    state: &std::path::Path,
) -> Result<String, String> {
    let out = Command::new(agent)
        .args(["--tcti", tcti, "--state-dir"])
        .arg(state)
        .args(["tpm", "info", "--json"])
        .output()
        .map_err(|e| chain(&e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("tpm info --json: {e}"))?;
    v["device_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "tpm info printed no device id".into())
}

/// 32 random bytes as hex, from the OS.
fn hex_nonce() -> String {
    let mut buf = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
