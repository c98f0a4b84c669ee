//! Diffs two 500-table schemas (every table with 12 columns and 3 keys; a fifth of the tables changed,
//! some added and dropped) and reports the time to parse both and diff them. Baseline in the same
//! run: finding the changed tables by comparing their CREATE texts, the least any diff must do.

use clap::Parser;
use std::time::Instant;
use strata_schema::{diff, Schema};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 500)]
    tables: usize,
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

fn table(i: usize, changed: bool) -> String {
    let mut cols = vec!["  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT".to_string()];
    for c in 0..11 {
        let ty = match (c + i) % 4 {
            0 => "int(11) NOT NULL DEFAULT 0".to_string(),
            1 => format!("varchar({}) DEFAULT NULL", 20 + c),
            2 => "decimal(10,2) NOT NULL DEFAULT 0.00".to_string(),
            _ => "datetime DEFAULT NULL".to_string(),
        };
        cols.push(format!("  `c{c}` {ty}"));
    }
    if changed {
        cols[3] = "  `c2` varchar(200) DEFAULT NULL".into();
        cols.insert(5, "  `added` int(11) DEFAULT NULL".into());
    }
    cols.push("  PRIMARY KEY (`id`)".into());
    cols.push("  KEY `k1` (`c0`,`c1`)".into());
    cols.push(format!(
        "  UNIQUE KEY `u{}` (`c3`)",
        if changed { 2 } else { 1 }
    ));
    format!("CREATE TABLE `t{i}` (\n{}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci", cols.join(",\n"))
}

fn main() {
    let a = Args::parse();
    let from: Vec<(String, String)> = (0..a.tables)
        .map(|i| (format!("t{i}"), table(i, false)))
        .collect();
    let to: Vec<(String, String)> = (10..a.tables + 10)
        .map(|i| (format!("t{i}"), table(i, i % 5 == 0)))
        .collect();
    let mut best = f64::MAX;
    let mut base_best = f64::MAX;
    let mut n = 0;
    for _ in 0..a.runs {
        let t = Instant::now();
        let sa =
            Schema::from_statements(from.iter().map(|(n, c)| ("table", n.as_str(), c.as_str())))
                .unwrap();
        let sb = Schema::from_statements(to.iter().map(|(n, c)| ("table", n.as_str(), c.as_str())))
            .unwrap();
        n = diff(&sa, &sb).unwrap().len();
        best = best.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let index: std::collections::HashMap<&str, &str> =
            from.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        let changed = to
            .iter()
            .filter(|(n, c)| index.get(n.as_str()) != Some(&c.as_str()))
            .count();
        std::hint::black_box(changed);
        base_best = base_best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{} tables: parse both + diff best of {}: {:.2} ms ({n} statements); baseline text comparison: {:.3} ms; ratio {:.0}",
        a.tables,
        a.runs,
        best * 1000.0,
        base_best * 1000.0,
        best / base_best
    );
}
