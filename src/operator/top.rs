//! `rigtap top`: a terminal view of a running pipeline, read from its API's `/status`
//! once a second: per component samples per second in and out, queue fill and drops;
//! per source miners by state, failed calls and their p99 latency; per sink what
//! waits for acknowledgement and how long deliveries take. `q` (or Esc) quits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Row, Table};
use ratatui::Frame;

use super::status::{ComponentStatus, Status};

/// How often the view reads `/status`.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// What the view shows: the last two reads (for rates), or why there is none.
struct View {
    address: SocketAddr,
    last: Option<(Status, Instant)>,
    previous: Option<(Status, Instant)>,
    problem: Option<String>,
}

/// Shows the pipeline behind `address` until `q`.
pub fn run(address: SocketAddr) -> Result<(), TopError> {
    let mut terminal = ratatui::try_init()?;
    let outcome = show(&mut terminal, address);
    ratatui::restore();
    outcome
}

fn show(terminal: &mut ratatui::DefaultTerminal, address: SocketAddr) -> Result<(), TopError> {
    let mut view = View {
        address,
        last: None,
        previous: None,
        problem: None,
    };
    let mut next_read = Instant::now();
    loop {
        if Instant::now() >= next_read {
            match read_status(address) {
                Ok(status) => {
                    view.previous = view.last.replace((status, Instant::now()));
                    view.problem = None;
                }
                Err(problem) => view.problem = Some(problem),
            }
            next_read = Instant::now() + REFRESH;
        }
        terminal.draw(|frame| draw(frame, &view))?;
        let wait = next_read.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                let quit = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c;
                if key.kind == KeyEventKind::Press && quit {
                    return Ok(());
                }
            }
        }
    }
}

/// One `GET /status`, over HTTP/1.0 (the server closes when the body is sent).
fn read_status(address: SocketAddr) -> Result<Status, String> {
    let unreachable = |e: std::io::Error| {
        format!("cannot read {address}/status: {e}; is `rigtap run` running with this config, and `api.enabled`?")
    };
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(unreachable)?;
    write!(stream, "GET /status HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(unreachable)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(unreachable)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{address}/status answered without a body"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "{address}/status answered: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    serde_json::from_str(body)
        .map_err(|e| format!("{address}/status is not what rigtap sends: {e}"))
}

fn draw(frame: &mut Frame<'_>, view: &View) {
    let [title, components, sources, sinks, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Min(4),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let heading = match (&view.problem, &view.last) {
        (Some(problem), _) => problem.clone(),
        (None, Some((status, _))) => format!(
            "rigtap top — {} — memory budget {:.1} of {:.1} MiB in use",
            view.address,
            status.memory_in_use as f64 / (1 << 20) as f64,
            status.memory_budget as f64 / (1 << 20) as f64
        ),
        (None, None) => format!("rigtap top — {} — reading…", view.address),
    };
    frame.render_widget(Line::from(heading), title);
    frame.render_widget(
        Line::from("q quits").style(Style::default().add_modifier(Modifier::DIM)),
        help,
    );
    let Some((status, at)) = &view.last else {
        return;
    };
    let previous = view.previous.as_ref();
    let rate = |c: &ComponentStatus, get: fn(&ComponentStatus) -> u64| -> String {
        let Some((before, then)) = previous else {
            return "-".into();
        };
        let Some(old) = before.components.iter().find(|o| o.id == c.id) else {
            return "-".into();
        };
        let seconds = at.duration_since(*then).as_secs_f64().max(0.001);
        format!("{:.0}", get(c).saturating_sub(get(old)) as f64 / seconds)
    };
    let header = |cells: &[&'static str]| {
        Row::new(cells.to_vec()).style(Style::default().add_modifier(Modifier::BOLD))
    };
    let rows = status.components.iter().map(|c| {
        let queue = c
            .queue
            .map_or("-".to_string(), |(depth, cap)| format!("{depth}/{cap}"));
        let state = if c.failed { "FAILED" } else { "ok" };
        Row::new(vec![
            c.id.clone(),
            c.role.clone(),
            rate(c, |c| c.samples_in),
            rate(c, |c| c.samples_out),
            queue,
            c.dropped.to_string(),
            state.to_string(),
        ])
    });
    let widths = [
        Constraint::Percentage(24),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(8),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header(&[
                "component",
                "kind",
                "in/s",
                "out/s",
                "queue",
                "dropped",
                "state",
            ]))
            .block(Block::bordered().title("components")),
        components,
    );
    let fleets = status.components.iter().filter_map(|c| {
        let fleet = c.fleet.as_ref()?;
        let state = |name: &str| fleet.states.get(name).copied().unwrap_or(0).to_string();
        Some(Row::new(vec![
            c.id.clone(),
            fleet.miners.to_string(),
            state("online"),
            state("degraded"),
            state("offline"),
            state("auth_failed"),
            fleet.failed_calls.to_string(),
            fleet
                .call_p99_ms
                .map_or("-".into(), |ms| format!("{ms} ms")),
        ]))
    });
    frame.render_widget(
        Table::new(
            fleets,
            [
                Constraint::Percentage(24),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(12),
                Constraint::Length(13),
                Constraint::Length(10),
            ],
        )
        .header(header(&[
            "source",
            "miners",
            "online",
            "degraded",
            "offline",
            "auth_failed",
            "failed calls",
            "call p99",
        ]))
        .block(Block::bordered().title("sources")),
        sources,
    );
    let sink_rows = status.components.iter().filter_map(|c| {
        let sink = c.sink.as_ref()?;
        let ms = |v: Option<u64>| v.map_or("-".into(), |ms| format!("{ms} ms"));
        Some(Row::new(vec![
            c.id.clone(),
            sink.in_flight.to_string(),
            ms(sink.delivery_p50_ms),
            ms(sink.delivery_p99_ms),
        ]))
    });
    frame.render_widget(
        Table::new(
            sink_rows,
            [
                Constraint::Percentage(24),
                Constraint::Length(12),
                Constraint::Length(14),
                Constraint::Length(14),
            ],
        )
        .header(header(&[
            "sink",
            "in flight",
            "delivery p50",
            "delivery p99",
        ]))
        .block(Block::bordered().title("sinks")),
        sinks,
    );
}
