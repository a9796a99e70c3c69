//! `lifeboat soak`: writing, replication both ways, region outages, drills
//! and failovers for a while, checked after every step.

use std::time::Duration;

use clap::Args;

use lifeboat::error::{Error, Result, exit_code};
use lifeboat::soak::{self, SoakOptions};

use crate::{Ctx, emit, parse_duration};

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_080))]
    minutes: u64,
    /// The two regions to soak (default: the first two configured).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    regions: Vec<String>,
    /// Steady running between two steps (in turn: an outage of the first
    /// region, a drill, an outage of the second, a failover).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    step_every: Duration,
    /// How long each outage lasts.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    outage_for: Duration,
    /// Records per second written to each database.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    rate: u64,
    /// Leave the soak's databases in place afterwards.
    #[arg(long)]
    keep: bool,
    /// Take at least this many steps, even past --minutes (a busy machine
    /// may not fit them in time).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    steps: u64,
}

pub async fn soak(ctx: &Ctx, json: bool, args: SoakArgs) -> Result<i32> {
    let names = if args.regions.is_empty() {
        ctx.regions.names().into_iter().take(2).collect()
    } else {
        args.regions.clone()
    };
    if names.len() != 2 || names[0] == names[1] {
        return Err(Error::invalid(
            "a soak needs two different regions; give --regions A,B or configure two",
        ));
    }
    if args.outage_for >= args.step_every {
        return Err(Error::invalid(
            "--outage-for must be shorter than --step-every: the system needs time to run between outages",
        ));
    }
    let regions = names
        .iter()
        .map(|name| ctx.open(&Some(name.clone())))
        .collect::<Result<Vec<_>>>()?;
    for warning in lifeboat::region::preflight(&regions).await? {
        eprintln!("warning: {warning}");
    }
    let duration = Duration::from_secs(args.minutes * 60);
    let opts = SoakOptions {
        duration,
        step_every: args.step_every,
        outage_for: args.outage_for,
        rate: args.rate,
        keep: args.keep,
        min_steps: args.steps as usize,
        ..SoakOptions::default()
    };
    if !json {
        eprintln!(
            "soak: {} minute(s) on {} and {}, {} writes/s each, an outage of {} s every {} s",
            args.minutes,
            names[0],
            names[1],
            args.rate,
            args.outage_for.as_secs(),
            args.step_every.as_secs()
        );
    }
    let report = soak::run(regions, opts, &ctx.home.acks_dir(), |step| {
        if !json {
            println!("{}", step.line());
            for check in &step.checks {
                for problem in &check.problems {
                    println!("  PROBLEM {}: {problem}", check.db);
                }
            }
        }
    })
    .await?;
    emit(json, &report, || {
        format!(
            "soak {}: {} step(s) in {:.0} s, {} records acknowledged, {} writer restart(s)",
            if report.ok { "passed" } else { "FAILED" },
            report.steps.len(),
            report.duration_s,
            report.records_acked,
            report.writer_restarts
        )
    })?;
    Ok(if report.ok {
        exit_code::OK
    } else {
        exit_code::HOLE
    })
}
