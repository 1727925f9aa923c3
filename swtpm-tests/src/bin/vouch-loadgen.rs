//! `vouch-loadgen`: N simulated devices against one fleet (mosquitto + `vouch-fleet serve`,
//! release binaries) to see whether the server keeps up with its challenge schedule.
//!
//! Devices are pre-provisioned instead of enrolled (see `swtpm_tests::load::provision`): each is
//! a `MemoryTpm` booted from a real firmware log, with a device certificate from the fleet CA
//! and its keys in the registry. All of them connect over mutual TLS with their own
//! certificate, then they are written into the registry, which makes the server challenge each
//! one every `--interval-secs`. After `--duration-secs` the verdicts whose challenge went out in
//! the window are read back from the registry: verdicts per second, latency (challenge issued ->
//! verdict stored), untrusted verdicts and errors, and the CPU each process used.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swtpm_tests::load::device::{self, Broker, Counters};
use swtpm_tests::load::provision::{self, BootImage};
use swtpm_tests::load::report::{
    self, find_process, machine_line, machine_ticks, process_ticks, rss_mib,
};
use swtpm_tests::stack::FleetStack;
use swtpm_tests::testdata;
use vouch_fleet::registry::now_ms;

/// Load generator: simulated devices attesting against one fleet.
#[derive(Parser, Debug)]
#[command(name = "vouch-loadgen")]
struct Args {
    /// Simulated devices.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Seconds between two challenges of one device (fleet.toml challenge.interval_secs).
    #[arg(long, default_value_t = 60)]
    interval_secs: u64,
    /// Random extra delay per challenge, 0 to this many seconds (challenge.jitter_secs).
    #[arg(long, default_value_t = 0)]
    jitter_secs: u64,
    /// Length of the measurement window in seconds.
    #[arg(long, default_value_t = 120)]
    duration_secs: u64,
    /// Seconds between registering the devices and opening the window.
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// TLS handshakes in progress at once while the devices connect.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// MQTT keep-alive of the devices, seconds.
    #[arg(long, default_value_t = 60)]
    keep_alive_secs: u64,
    /// Firmware event log the devices boot from (relative to the shared test data).
    #[arg(long, default_value = "eventlogs/t2t_event-arch-linux.bin")]
    eventlog: PathBuf,
    /// The shared test data directory (default: `<repo>/../shared/testdata`).
    #[arg(long, env = "VOUCH_TESTDATA")]
    testdata: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.devices == 0 || args.interval_secs == 0 || args.duration_secs == 0 {
        bail!("--devices, --interval-secs and --duration-secs must be greater than 0");
    }
    if args.jitter_secs >= args.interval_secs {
        bail!("--jitter-secs must be smaller than --interval-secs");
    }
    let log_path = args
        .testdata
        .clone()
        .unwrap_or_else(testdata)
        .join(&args.eventlog);
    let log =
        std::fs::read(&log_path).with_context(|| format!("reading {}", log_path.display()))?;
    let image = BootImage::from_log(&log)?;
    println!(
        "vouch-loadgen: {} devices, interval {} s (jitter {} s), window {} s; boot log {} ({} extends, {} bytes gzip)",
        args.devices,
        args.interval_secs,
        args.jitter_secs,
        args.duration_secs,
        args.eventlog.display(),
        image.extend_count(),
        image.eventlog_gz.len()
    );
    println!("machine: {}", machine_line());

    let (interval, jitter) = (args.interval_secs, args.jitter_secs);
    let fleet = FleetStack::start(&[], |t| {
        t.replace(
            "interval_secs = 300",
            &format!("interval_secs = {interval}"),
        )
        .replace("jitter_secs = 30", &format!("jitter_secs = {jitter}"))
    })
    .context("starting mosquitto and vouch-fleet serve")?;
    println!(
        "fleet: {} (broker port {})",
        fleet.dir().display(),
        fleet.port()
    );

    let t = Instant::now();
    let devices = provision::make_devices(&fleet.dir(), &image, args.devices, |n| {
        if n % 1000 == 0 {
            println!(
                "  provisioned {n} devices ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
        }
    })?;
    println!(
        "provisioned {} devices (MemoryTpm boot + certificate) in {:.1} s",
        devices.len(),
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let devices: Vec<Arc<provision::SimDevice>> = devices.into_iter().map(Arc::new).collect();
    let counters = Arc::new(Counters::default());
    rt.block_on(run(&args, &fleet, &image, devices, counters))
}

async fn run(
    args: &Args,
    fleet: &FleetStack,
    image: &BootImage,
    devices: Vec<Arc<provision::SimDevice>>,
    counters: Arc<Counters>,
) -> Result<()> {
    let broker = Broker {
        host: "localhost".into(),
        port: fleet.port(),
        ca: fleet.dir().join("ca.crt"),
        keep_alive: Duration::from_secs(args.keep_alive_secs),
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for d in &devices {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .context("start-up gate")?;
        tasks.spawn(device::run(
            d.clone(),
            broker.clone(),
            image.eventlog_gz.clone(),
            counters.clone(),
            permit,
        ));
    }
    let n = devices.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while Counters::get(&counters.subscribed) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} devices connected within 600 s; first errors: {:?}",
                Counters::get(&counters.subscribed),
                counters
                    .first_errors
                    .lock()
                    .map(|v| v.clone())
                    .unwrap_or_default()
            );
        }
        if let Some(done) = tasks.try_join_next() {
            bail!("a device task ended: {done:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_secs = t.elapsed().as_secs_f64();
    println!(
        "connected {n} devices (mutual TLS, MemoryTpm-signed handshakes) in {connect_secs:.1} s \
         ({:.0} handshakes/s), {} connection errors",
        n as f64 / connect_secs,
        Counters::get(&counters.connection_errors)
    );

    let state = fleet.dir().join("state");
    let t = Instant::now();
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    provision::register(&state, devices.iter().map(|d| d.as_ref()))
        .context("writing the devices into the registry")?;
    println!(
        "registered {n} devices in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;
    let server = find_process(&["vouch-fleet", "serve", &fleet.config().to_string_lossy()]);
    let broker_pid = std::fs::read_to_string(fleet.dir().join("mosquitto.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let cpu_at = || {
        (
            process_ticks(std::process::id()),
            server.and_then(process_ticks),
            broker_pid.and_then(process_ticks),
            machine_ticks(),
        )
    };
    if let Ok(mut s) = counters.answer_time.lock() {
        *s = swtpm_tests::load::stats::Samples::new();
    }
    let start_cpu = cpu_at();
    let from_ms = now_ms();
    let window = Instant::now();
    let (c0, r0) = (
        Counters::get(&counters.challenges),
        Counters::get(&counters.reports),
    );
    while window.elapsed() < Duration::from_secs(args.duration_secs) {
        tokio::time::sleep(
            Duration::from_secs(10)
                .min(Duration::from_secs(args.duration_secs).saturating_sub(window.elapsed())),
        )
        .await;
        println!(
            "  t+{:>4.0} s: challenges {} reports {} connection errors {} answer errors {}",
            window.elapsed().as_secs_f64(),
            Counters::get(&counters.challenges) - c0,
            Counters::get(&counters.reports) - r0,
            Counters::get(&counters.connection_errors),
            Counters::get(&counters.answer_errors),
        );
    }
    let to_ms = now_ms();
    let end_cpu = cpu_at();
    let window_secs = (to_ms - from_ms) as f64 / 1000.0;
    // Let the answers to the last challenges of the window arrive.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let per_device = u32::try_from(args.duration_secs / args.interval_secs + 4).unwrap_or(u32::MAX);
    let v = report::verdicts(&state, &ids, from_ms, to_ms, per_device)?;
    tasks.abort_all();

    let verdicts = v.trusted + v.untrusted;
    println!("\n== results ({window_secs:.0} s window)");
    println!(
        "verdicts: {verdicts} ({} trusted, {} untrusted) = {:.1} verdicts/s (schedule asks for {:.1}/s)",
        v.trusted,
        v.untrusted,
        verdicts as f64 / window_secs,
        n as f64 / args.interval_secs as f64
    );
    match v.latency.summary() {
        Some(s) => println!("latency challenge issued -> verdict stored: {s}"),
        None => println!("latency: no verdict in the window"),
    }
    println!(
        "devices without a verdict in the window: {}",
        v.silent_devices
    );
    for r in &v.reasons {
        println!("  untrusted: {r}");
    }
    if let Some(s) = counters.answer_time.lock().ok().and_then(|s| s.summary()) {
        println!("generator answer time in the window (challenge received -> report queued): {s}");
    }
    println!(
        "generator: challenges {} reports {} connection errors {} answer errors {}",
        Counters::get(&counters.challenges),
        Counters::get(&counters.reports),
        Counters::get(&counters.connection_errors),
        Counters::get(&counters.answer_errors)
    );
    for e in counters
        .first_errors
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default()
    {
        println!("  error: {e}");
    }
    print_cpu(start_cpu, end_cpu, window_secs);
    let rss = |p: Option<u32>| {
        p.and_then(rss_mib)
            .map_or("?".into(), |m| format!("{m} MiB"))
    };
    println!(
        "resident memory: generator {}, vouch-fleet serve {}, mosquitto {}",
        rss(Some(std::process::id())),
        rss(server),
        rss(broker_pid)
    );
    let log = fleet.server_log();
    for needle in ["queue full", "rate limit", "refused", "cannot"] {
        let count = log.lines().filter(|l| l.contains(needle)).count();
        println!("server log lines with {needle:?}: {count}");
    }
    println!("machine: {}", machine_line());
    if verdicts == 0 {
        bail!("no verdict was stored in the window");
    }
    Ok(())
}

type CpuSample = (Option<u64>, Option<u64>, Option<u64>, Option<(u64, u64)>);

fn print_cpu(a: CpuSample, b: CpuSample, secs: f64) {
    // Linux reports /proc times in USER_HZ = 100 ticks per second.
    let pct = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => format!("{:.1}%", (y.saturating_sub(x)) as f64 / secs),
        _ => "?".into(),
    };
    println!(
        "CPU in the window (100% = one core): generator {}, vouch-fleet serve {}, mosquitto {}",
        pct(a.0, b.0),
        pct(a.1, b.1),
        pct(a.2, b.2)
    );
    if let (Some((busy0, total0)), Some((busy1, total1))) = (a.3, b.3) {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * cpus * 100.0;
        println!("whole machine busy: {busy:.0}% of {:.0}%", cpus * 100.0);
    }
}
