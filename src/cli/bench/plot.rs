//! `authd bench-hash --plot FILE.svg`: draws the time of one hash against its cost, one panel
//! per algorithm (argon2id `memory_kib`, scrypt `log_n`, bcrypt `cost`: the x-axes differ), with
//! the time target, the calibrated setting, and the sign-ins per second each point would allow
//! on all cores. It only draws the figures it is given: it must not time anything, so that a
//! test can render synthetic data.

use std::fs::{File, OpenOptions};
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

/// What to draw.
pub(crate) struct Chart {
    /// The first line of the title, e.g. the machine.
    pub title: String,
    pub cores: usize,
    pub target_ms: f64,
    pub panels: Vec<Panel>,
}

/// One algorithm.
pub(crate) struct Panel {
    pub algorithm: &'static str,
    /// The parameter on the x-axis, as the config file names it.
    pub knob: &'static str,
    /// The parameters held fixed, e.g. `t=2 p=1`; empty when there are none.
    pub fixed: String,
    pub points: Vec<Point>,
}

/// One setting measured.
#[derive(Clone, Copy)]
pub(crate) struct Point {
    /// The knob's value.
    pub x: f64,
    pub median_ms: f64,
    /// The setting the calibration chose.
    pub chosen: bool,
}

const WIDTH_PER_PANEL: u32 = 520;
const MIN_WIDTH: u32 = 1040;
const HEIGHT: u32 = 560;
const FONT: &str = "sans-serif";
const LINE: RGBColor = RGBColor(31, 119, 180);
const TARGET: RGBColor = RGBColor(214, 39, 40);
const CHOSEN: RGBColor = RGBColor(44, 160, 44);

/// Sign-ins per second on `cores` when one hash takes `median_ms`: one hashing worker per
/// core, nothing else running.
pub(crate) fn sign_ins_per_second(cores: usize, median_ms: f64) -> f64 {
    cores as f64 * 1000.0 / median_ms.max(1e-9)
}

/// `8.2/s`, `157/s`.
fn rate_label(per_second: f64) -> String {
    if per_second >= 100.0 {
        format!("{per_second:.0}/s")
    } else {
        format!("{per_second:.1}/s")
    }
}

/// The file the plot goes to, opened before anything is timed, so that a path that cannot be
/// written fails at once instead of after the measurements. Dropped unwritten, it removes the
/// file if it created it (an existing file is left as it was: it is not truncated until
/// [`Output::write`]).
pub(crate) struct Output {
    path: PathBuf,
    file: File,
    created: bool,
    written: bool,
}

impl Output {
    /// # Errors
    /// When `path` cannot be opened for writing (no such directory, no permission, a
    /// directory).
    pub fn open(path: &Path) -> anyhow::Result<Output> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("--plot: cannot write {}", path.display()))?;
        Ok(Output {
            path: path.to_path_buf(),
            file,
            created,
            written: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Draws `chart` and writes it, replacing what the file held.
    ///
    /// # Errors
    /// When the chart has nothing to draw or the file cannot be written.
    pub fn write(mut self, chart: &Chart) -> anyhow::Result<()> {
        let svg = render(chart)?;
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(svg.as_bytes())?;
            file.sync_all()
        };
        write(&mut self.file).with_context(|| format!("cannot write {}", self.path.display()))?;
        self.written = true;
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.created && !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Draws `chart` as an SVG document.
///
/// # Errors
/// When the chart has nothing to draw.
pub(crate) fn render(chart: &Chart) -> anyhow::Result<String> {
    anyhow::ensure!(!chart.panels.is_empty(), "nothing to plot");
    // Room for the title even with one panel.
    let width = (WIDTH_PER_PANEL * chart.panels.len() as u32).max(MIN_WIDTH);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "{}: time of one hash (median) against its cost; labels: sign-ins/s on {} cores",
                chart.title, chart.cores
            ),
            (FONT, 18),
        )?;
        let areas = root.split_evenly((1, chart.panels.len()));
        for (area, panel) in areas.iter().zip(&chart.panels) {
            draw_panel(area, panel, chart)
                .with_context(|| format!("cannot draw the {} panel", panel.algorithm))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// The label of a key point of a log axis: `1`, `2`, `5`, `10`, `20`, `0.5`...; empty for the
/// others (3, 4, 6...), whose labels would crowd the axis.
fn log_label(y: &f64) -> String {
    if *y <= 0.0 {
        return String::new();
    }
    let decade = 10f64.powf(y.log10().floor());
    let mantissa = (y / decade).round();
    let on_step = ((y / decade) - mantissa).abs() < 1e-6;
    if !on_step || ![1.0, 2.0, 5.0].contains(&mantissa) {
        return String::new();
    }
    let value = mantissa * decade;
    if value >= 1.0 {
        format!("{value:.0}")
    } else {
        // 0.5, 0.2, 0.05: as many decimals as the decade needs.
        let decimals = (-decade.log10()).round() as usize;
        format!("{value:.decimals$}")
    }
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    chart: &Chart,
) -> anyhow::Result<()> {
    let memory = panel.knob == "memory_kib";
    // Every x-axis steps where the work doubles: scrypt's log_n and bcrypt's cost already do;
    // argon2id's memory is drawn as log2 of its MiB, so that its doubling grid is evenly spaced.
    let at = |x: f64| if memory { (x / 1024.0).log2() } else { x };
    let mut points = panel.points.clone();
    points.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        anyhow::bail!("no point measured");
    };
    // Half a step of room on each side.
    let (x_lo, x_hi) = (at(first.x).floor() - 0.5, at(last.x).ceil() + 0.5);
    let y_min = points
        .iter()
        .map(|p| p.median_ms)
        .fold(chart.target_ms, f64::min);
    let y_max = points
        .iter()
        .map(|p| p.median_ms)
        .fold(chart.target_ms, f64::max);
    // plotters places a log axis's key points from the first power of ten in its range: start
    // the range at one, so that the steps below the first point are labelled too.
    let (y_lo, y_hi) = (10f64.powf((y_min / 1.5).log10().floor()), y_max * 2.0);

    let mut c = ChartBuilder::on(area)
        .caption(
            if panel.fixed.is_empty() {
                panel.algorithm.to_string()
            } else {
                format!("{} ({} kept)", panel.algorithm, panel.fixed)
            },
            (FONT, 16),
        )
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(60)
        .build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())?;
    c.configure_mesh()
        .x_desc(if memory {
            "memory_kib / 1024 (MiB, log scale)"
        } else {
            panel.knob
        })
        .y_desc("ms per hash (log scale)")
        // A log axis gets a light line per unit step: too dense to read.
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08))
        // With the default count, a log axis spanning two decades is labelled at 10 and 100
        // only; this many gives a line at each step between (1, 2, 3 ... 9, 10, 20 ...), of
        // which only 1, 2 and 5 times a power of ten are labelled.
        .y_labels(30)
        .x_labels(((x_hi - x_lo).round() as usize).max(2))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() > 1e-6 {
                String::new()
            } else if memory {
                format!("{}", 2f64.powf(x.round()))
            } else {
                format!("{x:.0}")
            }
        })
        .y_label_formatter(&log_label)
        .draw()?;

    c.draw_series(LineSeries::new(
        points.iter().map(|p| (at(p.x), p.median_ms)),
        LINE.stroke_width(2),
    ))?
    .label("median time of one hash")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], LINE.stroke_width(2)));
    c.draw_series(LineSeries::new(
        [(x_lo, chart.target_ms), (x_hi, chart.target_ms)],
        TARGET.stroke_width(1),
    ))?
    .label(format!("target {} ms", chart.target_ms))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TARGET.stroke_width(1)));

    // Each point gets its sign-ins per second, unless it sits within a third of a step of the
    // chosen point or of the last point labelled: the calibration's trials bunch up around the
    // target, and their labels would overwrite one another.
    let chosen_at = points.iter().find(|p| p.chosen).map(|p| at(p.x));
    let mut last_labelled: Option<f64> = None;
    let labelled: Vec<bool> = points
        .iter()
        .map(|p| {
            let x = at(p.x);
            let crowded = |other: Option<f64>| other.is_some_and(|o| (x - o).abs() < 0.34);
            let keep = p.chosen || !(crowded(chosen_at) || crowded(last_labelled));
            if keep && !p.chosen {
                last_labelled = Some(x);
            }
            keep
        })
        .collect();
    let label_style = (FONT, 12).into_font().color(&BLACK);
    c.draw_series(points.iter().zip(&labelled).filter(|(p, _)| !p.chosen).map(
        |(p, &labelled)| {
            let text = if labelled {
                rate_label(sign_ins_per_second(chart.cores, p.median_ms))
            } else {
                String::new()
            };
            EmptyElement::at((at(p.x), p.median_ms))
                + Circle::new((0, 0), 3, LINE.filled())
                + Text::new(text, (5, -15), label_style.clone())
        },
    ))?;
    // The chosen setting in full goes in the legend, where there is room for it; by the point,
    // its sign-ins per second as for the others.
    let chosen = points.iter().find(|p| p.chosen).copied();
    let legend = match chosen {
        Some(p) => format!(
            "chosen: {} = {}, {:.0} ms, {}",
            panel.knob,
            p.x,
            p.median_ms,
            rate_label(sign_ins_per_second(chart.cores, p.median_ms))
        ),
        None => "chosen: none under the target".to_string(),
    };
    let chosen_style = (FONT, 12).into_font().color(&CHOSEN);
    c.draw_series(chosen.iter().map(|p| {
        EmptyElement::at((at(p.x), p.median_ms))
            + Circle::new((0, 0), 6, CHOSEN.filled())
            + Text::new(
                rate_label(sign_ins_per_second(chart.cores, p.median_ms)),
                (8, -20),
                chosen_style.clone(),
            )
    }))?
    .label(legend)
    .legend(|(x, y)| Circle::new((x + 10, y), 5, CHOSEN.filled()));

    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn point(x: f64, median_ms: f64, chosen: bool) -> Point {
        Point {
            x,
            median_ms,
            chosen,
        }
    }

    #[test]
    fn a_plot_of_synthetic_data_is_svg_with_its_labels() {
        let chart = Chart {
            title: "authd bench-hash, 2 cores (test CPU)".into(),
            cores: 2,
            target_ms: 250.0,
            panels: vec![
                Panel {
                    algorithm: "argon2id",
                    knob: "memory_kib",
                    fixed: "t=2 p=1".into(),
                    points: vec![
                        point(19456.0, 12.5, false),
                        point(229_376.0, 242.7, true),
                        // Within a third of a step of the chosen one: no label.
                        point(245_760.0, 260.0, false),
                        point(379_904.0, 450.5, false),
                    ],
                },
                Panel {
                    algorithm: "scrypt",
                    knob: "log_n",
                    fixed: "r=8 p=1".into(),
                    points: vec![
                        point(16.0, 120.0, false),
                        point(17.0, 244.0, true),
                        point(18.0, 490.0, false),
                    ],
                },
                Panel {
                    algorithm: "bcrypt",
                    knob: "cost",
                    fixed: String::new(),
                    points: vec![point(12.0, 200.0, true), point(13.0, 400.0, false)],
                },
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench-hash.svg");
        // An existing file is replaced, not appended to.
        std::fs::write(&path, "old content that is longer than nothing").unwrap();
        Output::open(&path).unwrap().write(&chart).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(!svg.contains("old content"));
        assert!(svg.trim_start().starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for label in [
            "argon2id (t=2 p=1 kept)",
            "scrypt (r=8 p=1 kept)",
            "memory_kib / 1024 (MiB, log scale)",
            "log_n",
            "cost",
            "ms per hash (log scale)",
            "target 250 ms",
            "chosen: memory_kib = 229376, 243 ms, 8.2/s",
            "chosen: log_n = 17, 244 ms, 8.2/s",
            "chosen: cost = 12, 200 ms, 10.0/s",
            // 2 cores / 12.5 ms.
            "160/s",
            "sign-ins/s on 2 cores",
        ] {
            assert!(svg.contains(label), "{label:?} missing from the SVG");
        }
        // 2 cores / 260 ms, crowded out.
        assert!(!svg.contains("7.7/s"));
        // 2 cores / 450.5 ms.
        assert!(svg.contains("4.4/s"));
    }

    #[test]
    fn a_panel_with_no_setting_under_the_target_says_so() {
        let chart = Chart {
            title: "t".into(),
            cores: 2,
            target_ms: 5.0,
            panels: vec![Panel {
                algorithm: "bcrypt",
                knob: "cost",
                fixed: String::new(),
                points: vec![point(4.0, 6.0, false), point(5.0, 12.0, false)],
            }],
        };
        let svg = render(&chart).unwrap();
        assert!(svg.contains("chosen: none under the target"), "{svg}");
        assert!(svg.contains("target 5 ms"));
    }

    #[test]
    fn log_axes_label_one_two_and_five_times_a_power_of_ten() {
        let labels: Vec<String> = [
            0.05, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 9.0, 10.0, 20.0, 500.0, 700.0,
        ]
        .iter()
        .map(log_label)
        .collect();
        assert_eq!(
            labels,
            [
                "0.05", "", "0.5", "1", "2", "", "5", "", "10", "20", "500", ""
            ]
        );
    }

    #[test]
    fn nothing_to_plot_is_an_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let chart = Chart {
            title: String::new(),
            cores: 1,
            target_ms: 250.0,
            panels: Vec::new(),
        };
        let path = dir.path().join("x.svg");
        assert!(Output::open(&path).unwrap().write(&chart).is_err());
        assert!(!path.exists());
        // One that was there before stays.
        std::fs::write(&path, "kept").unwrap();
        assert!(Output::open(&path).unwrap().write(&chart).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept");
    }

    #[test]
    fn an_unwritable_path_fails_at_open_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("x.svg");
        let e = Output::open(&path).err().unwrap();
        assert!(format!("{e:#}").contains("no-such-dir/x.svg"), "{e:#}");
        assert!(Output::open(dir.path()).is_err(), "a directory");
    }
}
