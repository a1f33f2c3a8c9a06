//! `hermes stats`: bucket sizes, entropy and perplexity per depth of a `hermes label` output,
//! and tokens per bucket when it was labeled with `--count-tokens`.

use anyhow::{Result, bail};

use super::args::StatsArgs;
use crate::corpus::codes::{code_levels, list, read_codes_with};
use crate::eval::buckets::BucketCounter;
use crate::eval::plot::plot_svg;

pub fn run(args: StatsArgs) -> Result<()> {
    // The same listing as mix and describe: every file done, all by one labeler (codes of
    // two bundles or tiers are not comparable, so their buckets must not be summed).
    // The markers agree on the tokenizer too, so either every file has `tokens` or none.
    let (files, marker) = list(std::slice::from_ref(&args.input)).map_err(|e| {
        anyhow::anyhow!("{e} (is {} a `hermes label` --out?)", args.input.display())
    })?;
    let files: Vec<_> = files.into_iter().map(|f| f.path).collect();
    // Checked against the first file's footer, before any file is read.
    let levels = code_levels(&files[0]).map_err(anyhow::Error::msg)?;
    if let Some(d) = args.depth
        && !(1..=levels).contains(&d)
    {
        bail!("--depth {d} is outside 1..={levels}");
    }
    let tokens = marker.tokens_tokenizer.is_some();
    let mut counter: Option<BucketCounter> = None;
    for f in &files {
        read_codes_with(f, tokens, |code, n| {
            counter
                .get_or_insert_with(|| {
                    let depth = args.depth.unwrap_or(code.len());
                    if tokens {
                        BucketCounter::with_tokens(depth)
                    } else {
                        BucketCounter::new(depth)
                    }
                })
                .add_tokens(code, n);
        })
        .map_err(anyhow::Error::msg)?;
    }
    let Some(counter) = counter else {
        bail!("{}: the codes files hold no rows", args.input.display());
    };
    let mut report = counter.report();
    report.tokens_tokenizer = marker.tokens_tokenizer;
    match args.format.as_str() {
        "csv" => print!("{}", report.csv()),
        _ => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = &args.plot {
        plot_svg(&report, path).map_err(anyhow::Error::msg)?;
        tracing::info!("hermes stats: plot written to {}", path.display());
    }
    Ok(())
}
