//! `make demo`: Vouch's main job end to end on a private swtpm, step by step, exiting non-zero at
//! the first step that fails.

use std::process::{Command, ExitCode};
use swtpm_tests::{bin_path, Swtpm};

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
    let tpm = Swtpm::start().map_err(|e| e.to_string())?;
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
        "independent check (tpm2_checkquote)",
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
    println!("\nverdict: quote verified (signature, nonce and PCR digest)");
    Ok(())
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
