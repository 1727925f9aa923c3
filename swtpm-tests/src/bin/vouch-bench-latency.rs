//! `vouch-bench-latency`: end-to-end attestation latency with the real processes — mosquitto,
//! `vouch-fleet serve` and `vouch-agent run` on a swtpm booted from a real firmware log — from
//! the moment the fleet issues a challenge to the moment it stores the verdict (the
//! `challenged_ms` / `stored_ms` columns of the verdict rows), next to in-process timings of the
//! steps of one round (bare swtpm quote, event log gzip, outbox fsync, appraisal) measured on a
//! separate swtpm in the same run.
//!
//! Run it with release binaries: `cargo build --release --workspace --bins && cargo run
//! --release -p swtpm-tests --bin vouch-bench-latency` (the workspace binaries are found next to
//! this one).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use swtpm_tests::load::observer::{Observer, Seen};
use swtpm_tests::load::report::machine_line;
use swtpm_tests::load::stats::{Samples, Summary};
use swtpm_tests::load::{components, rawquote};
use swtpm_tests::stack::FleetStack;
use swtpm_tests::{run, testdata, Swtpm};

/// End-to-end attestation latency over mosquitto + swtpm with the real agent and server.
#[derive(Parser, Debug)]
#[command(name = "vouch-bench-latency")]
struct Args {
    /// Verdicts to collect after the first (enrollment-time) one.
    #[arg(long, default_value_t = 50)]
    verdicts: u32,
    /// Challenge interval in seconds; the fleet's per-device rate limit (30 messages a minute)
    /// needs at least 2.
    #[arg(long, default_value_t = 2)]
    interval_secs: u64,
    /// Restart mosquitto with `set_tcp_nodelay true` (Nagle off on its sockets) before the
    /// agent starts, to see what Nagle's algorithm costs.
    #[arg(long)]
    broker_tcp_nodelay: bool,
    /// Rounds of the in-process step timings.
    #[arg(long, default_value_t = 200)]
    rounds: u32,
    /// Firmware event log the swtpms are booted from (relative to the shared test data).
    #[arg(long, default_value = "eventlogs/t2t_event-arch-linux.bin")]
    eventlog: PathBuf,
    /// The shared test data directory (default: `<repo>/../shared/testdata`).
    #[arg(long, env = "VOUCH_TESTDATA")]
    testdata: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // tpm2-tss logs expected TPM errors (e.g. probing for the SRK) to stderr: keep it quiet.
    std::env::set_var("TSS2_LOG", "all+none");
    if args.interval_secs < 2 {
        bail!("--interval-secs must be at least 2 (the fleet drops a device's messages above 30 a minute)");
    }
    let log = args
        .testdata
        .clone()
        .unwrap_or_else(testdata)
        .join(&args.eventlog);
    let log_bytes = std::fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
    println!("vouch-bench-latency: event log {}", args.eventlog.display());
    println!("machine: {}", machine_line());

    println!(
        "\n== steps of one round, in-process, separate swtpm ({} rounds)",
        args.rounds
    );
    let bare = Swtpm::start().context("starting the swtpm for the step timings")?;
    bare.boot_from_log(&log_bytes)
        .context("booting the step-timing swtpm")?;
    let c = components::measure(&bare, &log, args.rounds)?;
    let raw = rawquote::measure(bare.port(), args.rounds)?;
    drop(bare);
    println!(
        "  TPM2_Quote alone (tss-esapi, password session, AK loaded): {}",
        raw.quote_password
    );
    println!(
        "  TPM2_Quote in a null-auth HMAC session:                   {}",
        raw.quote_nullauth
    );
    println!(
        "  TPM2_PCR_Read sha256:0-7:                                 {}",
        raw.pcr_read
    );
    println!("  swtpm quote (EsapiTpm, sha256:0-7): {}", c.quote);
    println!("  event log read + gzip (agent):      {}", c.eventlog_gzip);
    println!("  outbox push with fsync (agent):     {}", c.outbox_push);
    println!("  appraisal (fleet verifier):         {}", c.appraisal);

    println!(
        "\n== end to end: mosquitto + vouch-fleet serve + vouch-agent run (interval {} s)",
        args.interval_secs
    );
    let e2e = end_to_end(&args, &log, &log_bytes)?;
    println!("  challenge issued -> verdict stored: {}", e2e.total);
    println!(
        "  split by a passive MQTT observer (matched {} of them):",
        e2e.matched
    );
    println!(
        "    challenge issued -> delivered by the broker:     {}",
        e2e.to_challenge
    );
    println!(
        "    challenge delivered -> report delivered (agent): {}",
        e2e.answer
    );
    println!(
        "    report delivered -> verdict stored (fleet):      {}",
        e2e.to_stored
    );
    println!("machine: {}", machine_line());
    Ok(())
}

fn status(v: &serde_json::Value) -> &str {
    v["device"]["status"].as_str().unwrap_or_default()
}

/// The end-to-end figures.
struct EndToEnd {
    total: Summary,
    matched: usize,
    to_challenge: Summary,
    answer: Summary,
    to_stored: Summary,
}

fn end_to_end(args: &Args, log: &std::path::Path, log_bytes: &[u8]) -> Result<EndToEnd> {
    let tpm = Swtpm::start().context("starting the agent's swtpm")?;
    tpm.boot_from_log(log_bytes)
        .context("booting the agent's swtpm")?;
    let trust = [tpm.ca_root_cert(), tpm.ca_dir().join("issuercert.pem")];
    let interval = args.interval_secs;
    let mut fleet = FleetStack::start(&trust, |t| {
        t.replace("jitter_secs = 30", "jitter_secs = 0").replace(
            "interval_secs = 300",
            &format!("interval_secs = {interval}"),
        )
    })
    .context("starting mosquitto and vouch-fleet serve")?;
    if args.broker_tcp_nodelay {
        fleet.stop_broker();
        let conf = fleet.dir().join("mosquitto.conf");
        let text = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        std::fs::write(&conf, format!("{text}set_tcp_nodelay true\n"))
            .with_context(|| format!("writing {}", conf.display()))?;
        fleet.start_broker().context("restarting mosquitto")?;
        println!("  mosquitto restarted with set_tcp_nodelay true");
    }
    let observer = Observer::start(&fleet.dir(), fleet.enroll_port())?;
    let state = tpm.dir().join("agent");
    let id = device_id(&tpm, &state)?;
    let config = fleet.agent_config(&tpm, &state, log)?;
    let _agent = fleet.start_agent(&config)?;
    let agent_log = || std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    let first = fleet
        .wait_device(&id, Duration::from_secs(60), |v| status(v) == "trusted")
        .with_context(|| {
            format!(
                "the agent never became trusted; agent log:\n{}",
                agent_log()
            )
        })?;
    let first_id = first["verdicts"][0]["id"].as_i64().unwrap_or(0);
    println!("  device {id} enrolled and trusted (verdict #{first_id}); collecting...");
    let want = i64::from(args.verdicts);
    let timeout = Duration::from_secs(
        interval.saturating_mul(3).saturating_add(5) * u64::from(args.verdicts),
    );
    let started = Instant::now();
    fleet
        .wait_device(&id, timeout, |v| {
            v["verdicts"][0]["id"].as_i64().unwrap_or(0) >= first_id + want
        })
        .with_context(|| format!("too few verdicts; agent log:\n{}", agent_log()))?;
    println!("  collected in {:.1} s", started.elapsed().as_secs_f64());
    let n = (args.verdicts + 5).to_string();
    let out = fleet.cli(&["device", "show", &id, "--json", "--verdicts", &n]);
    if out.code != 0 {
        bail!("vouch-fleet device show failed: {}", out.stderr);
    }
    let shown: serde_json::Value =
        serde_json::from_str(&out.stdout).context("device show --json printed no JSON")?;
    let mut samples = Samples::new();
    let seen = observer.seen();
    let (mut to_challenge, mut answer, mut to_stored) =
        (Samples::new(), Samples::new(), Samples::new());
    let empty = Vec::new();
    for v in shown["verdicts"].as_array().unwrap_or(&empty) {
        let vid = v["id"].as_i64().unwrap_or(0);
        if vid <= first_id || vid > first_id + want {
            continue;
        }
        if v["trusted"] != true {
            bail!("verdict #{vid} is not trusted: {}", v["reasons"]);
        }
        let (Some(c), Some(s)) = (v["challenged_ms"].as_i64(), v["stored_ms"].as_i64()) else {
            bail!("verdict #{vid} lacks challenged_ms/stored_ms: {v}");
        };
        samples.push_ms(s - c);
        if let Some((ch, rep)) = observed(&seen, c) {
            to_challenge.push_us(ch - c * 1000);
            answer.push_us(rep - ch);
            to_stored.push_us(s * 1000 - rep);
        }
    }
    let total = samples
        .summary()
        .filter(|s| s.count == args.verdicts as usize)
        .with_context(|| format!("expected {} verdicts, got {}", args.verdicts, samples.len()))?;
    let none = || "the observer saw no challenge/report pair";
    Ok(EndToEnd {
        total,
        matched: answer.len(),
        to_challenge: to_challenge.summary().with_context(none)?,
        answer: answer.summary().with_context(none)?,
        to_stored: to_stored.summary().with_context(none)?,
    })
}

/// The first challenge the observer saw within a second after `challenged_ms`, with its report:
/// (challenge µs, report µs).
fn observed(seen: &[Seen], challenged_ms: i64) -> Option<(i64, i64)> {
    let from = challenged_ms * 1000;
    seen.iter()
        .find_map(|s| match (s.challenge_us, s.report_us) {
            (Some(c), Some(r)) if c >= from && c < from + 1_000_000 => Some((c, r)),
            _ => None,
        })
}

fn device_id(tpm: &Swtpm, state: &std::path::Path) -> Result<String> {
    let state = state.to_string_lossy();
    let tcti = tpm.tcti();
    let out = run(
        "vouch-agent",
        &[
            "--tcti",
            &tcti,
            "--state-dir",
            &state,
            "tpm",
            "info",
            "--json",
        ],
        &[],
    );
    if out.code != 0 {
        bail!("vouch-agent tpm info failed: {}", out.stderr);
    }
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).context("tpm info --json printed no JSON")?;
    v["device_id"]
        .as_str()
        .map(str::to_string)
        .context("tpm info printed no device id")
}
