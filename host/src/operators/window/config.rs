//! A window stage's config table: the `[stages.NAME]` fields of `type = "window"`, checked and built
//! into a [`WindowOperator`].

use super::*;

/// Aggregates records per key and window with a window-aggregate plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// A bundled aggregate (`average`, `sum`, `max`, `top_k`) or the path to a `.wasm` file, built for
    /// plugin ABI 0.4 (the SDK's), 0.3, 0.2 or 0.1.
    pub plugin: Spanned<String>,
    /// The plugin's own settings, e.g. `config = { field = "streams" }`.
    #[serde(default)]
    pub config: PluginConfig,
    /// The field to group by; results carry it under the same name. Omit it to aggregate all records
    /// of a window together.
    pub key: Option<String>,
    /// The window: `{ kind = "tumbling", size = "1m" }`, `{ kind = "hopping", size = "1m", slide = "10s" }`,
    /// `{ kind = "session", gap = "30s" }` or `{ kind = "global" }` (one window, emitted at end of input).
    pub window: Spanned<WindowTable>,
    /// A field holding the event time in milliseconds since the epoch; default: the record timestamp.
    pub event_time: Option<String>,
    /// How far behind the newest event time the watermark trails, to wait for out-of-order records.
    /// Default `0s`.
    #[serde(default)]
    pub max_delay: Duration,
    /// How long after the watermark passes a window's end the window still accepts records (and is
    /// emitted again with them). Records behind the watermark by more than this are dead-lettered as
    /// `late`. Default `0s`.
    #[serde(default)]
    pub allowed_lateness: Duration,
    /// How far ahead of the newest event time so far (or of the clock, whichever is later) a record may
    /// be. A record further ahead is dead-lettered with reason `time out of range` rather than moving
    /// the watermark past every record after it. Default `1h`. Not checked for the global window.
    pub max_future: Option<Duration>,
    /// Longest one plugin call (one batch, `init`, or emitting results) may run before the run stops
    /// with an error that names the plugin, like `"5s"` (the default).
    pub timeout: Option<Duration>,
    /// Most memory the plugin's instance (all its open windows' accumulators) may use, like `"512MiB"`
    /// (the default).
    pub memory_limit: Option<ByteSize>,
    /// When the plugin fails (traps, panics, passes its `timeout` or `memory_limit`, or breaks the
    /// contract): `"dead-letter"` (the default) sends the records of the batch it failed on to the
    /// dead-letter output with the cause, restarts the plugin with its open windows rebuilt, and goes
    /// on; at the end of input, a window whose result fails is named in the dead-letter output instead.
    /// `"fail"` stops the run with the error.
    pub on_error: Option<OnError>,
}

/// `max_future` when the stage does not set it: an hour.
const DEFAULT_MAX_FUTURE_MS: i64 = 3_600_000;
/// Event times beyond this many milliseconds from the epoch (either way) are out of range: ECMAScript's
/// date range, far from where window bounds (time + size + lateness) overflow.
pub const TIME_LIMIT_MS: i64 = 8_640_000_000_000_000;

/// The `window` table of a window stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowTable {
    /// `tumbling`, `hopping`, `session` or `global`.
    pub kind: Spanned<String>,
    /// Window length (tumbling, hopping), like `1m`.
    pub size: Option<Duration>,
    /// Distance between window starts (hopping), like `10s`.
    pub slide: Option<Duration>,
    /// Inactivity that closes a session (session), like `30s`.
    pub gap: Option<Duration>,
}

/// A window shape, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: i64 },
    Hopping { size: i64, slide: i64 },
    Session { gap: i64 },
    Global,
}

impl WindowTable {
    pub(super) fn kind(&self, span: std::ops::Range<usize>) -> Result<WindowKind, BuildError> {
        let err = |m: String| BuildError::new(Some(span.clone()), m);
        let positive = |name: &str, d: Option<Duration>, example: &str| match d {
            Some(d) if d.millis() > 0 => Ok(d.millis()),
            Some(_) => Err(err(format!("window `{name}` must be longer than 0"))),
            None => Err(err(format!(
                "a {} window needs `{name}`; add it, like `{name} = \"{example}\"`",
                self.kind.get_ref()
            ))),
        };
        let unused = |name: &str, d: Option<Duration>| match d {
            Some(_) => Err(err(format!(
                "a {} window takes no `{name}`; remove it",
                self.kind.get_ref()
            ))),
            None => Ok(()),
        };
        match self.kind.get_ref().as_str() {
            "tumbling" => {
                unused("slide", self.slide)?;
                unused("gap", self.gap)?;
                Ok(WindowKind::Tumbling { size: positive("size", self.size, "1m")? })
            }
            "hopping" => {
                unused("gap", self.gap)?;
                let size = positive("size", self.size, "1m")?;
                let slide = positive("slide", self.slide, "10s")?;
                if slide > size {
                    return Err(err("a hopping window's `slide` must not exceed its `size`".into()));
                }
                Ok(WindowKind::Hopping { size, slide })
            }
            "session" => {
                unused("size", self.size)?;
                unused("slide", self.slide)?;
                Ok(WindowKind::Session { gap: positive("gap", self.gap, "30s")? })
            }
            "global" => {
                unused("size", self.size)?;
                unused("slide", self.slide)?;
                unused("gap", self.gap)?;
                Ok(WindowKind::Global)
            }
            other => Err(BuildError::new(
                Some(self.kind.span()),
                format!("unknown window kind `{other}`; use `tumbling`, `hopping`, `session` or `global`"),
            )),
        }
    }
}

impl StageConfig for WindowConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Built, BuildError> {
        let kind = self.window.get_ref().kind(self.window.span())?;
        let limits = Limits::from_config(self.timeout, self.memory_limit)
            .map_err(|e| BuildError::new(Some(self.plugin.span()), e))?;
        let mut instance = ctx.plugin(&self.plugin, &self.config, |host, plugin, config| {
            host.aggregate(plugin, config, limits)
        })?;
        instance.set_log_label(format!("stage `{}`", ctx.stage));
        let mut reserved = vec!["window_start", "window_end"];
        reserved.extend(self.key.as_deref());
        crate::plugin::check_outputs(&instance.spec.outputs, &reserved)
            .map_err(|e| BuildError::new(Some(self.plugin.span()), e))?;
        let settings = Settings {
            kind,
            key: self.key.as_deref().map(Arc::from),
            event_time: self.event_time.as_deref().map(Arc::from),
            max_delay: self.max_delay.millis(),
            allowed_lateness: self.allowed_lateness.millis(),
            max_future: self
                .max_future
                .map_or(DEFAULT_MAX_FUTURE_MS, |d| d.millis()),
        };
        let on_error = self.on_error.unwrap_or_default();
        Ok(Built::Operator(Box::new(WindowOperator {
            windows: Windows::new(settings, instance),
            started: false,
            recovery: (on_error == OnError::DeadLetter).then(Recovery::default),
            failures: 0,
        })))
    }

    /// A result is identified by its window's bounds and its key.
    fn exchange_key(&self) -> Option<Option<String>> {
        Some(self.key.clone())
    }

    fn output_key(&self) -> Option<Vec<String>> {
        let bounds = ["window_start".to_string(), "window_end".to_string()];
        Some(bounds.into_iter().chain(self.key.clone()).collect())
    }
}
