//! `hermes stats`: bucket sizes, entropy and perplexity per depth of a `hermes label` output.

use anyhow::{Result, bail};

use super::args::StatsArgs;
use crate::corpus::codes::{code_files, read_codes};
use crate::eval::buckets::BucketCounter;
use crate::eval::plot::plot_svg;

pub fn run(args: StatsArgs) -> Result<()> {
    let files = code_files(&args.input).map_err(anyhow::Error::msg)?;
    if files.is_empty() {
        bail!(
            "{}: no codes/*.parquet (is it a `hermes label` --out?)",
            args.input.display()
        );
    }
    let mut counter: Option<BucketCounter> = None;
    let mut levels = 0;
    for f in &files {
        read_codes(f, |code| {
            let c = counter.get_or_insert_with(|| {
                levels = code.len();
                BucketCounter::new(args.depth.unwrap_or(code.len()).clamp(1, code.len()))
            });
            c.add(code);
        })
        .map_err(anyhow::Error::msg)?;
    }
    if let Some(d) = args.depth
        && (d == 0 || (levels > 0 && d > levels))
    {
        bail!("--depth {d} is outside 1..={levels}");
    }
    let Some(counter) = counter else {
        bail!("{}: the codes files hold no rows", args.input.display());
    };
    let report = counter.report();
    match args.format.as_str() {
        "csv" => print!("{}", report.csv()),
        _ => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = &args.plot {
        plot_svg(&report, path).map_err(anyhow::Error::msg)?;
        eprintln!("hermes stats: plot written to {}", path.display());
    }
    Ok(())
}
