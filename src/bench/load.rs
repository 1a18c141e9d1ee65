//! A small closed-loop HTTP load generator for `vidne bench fetch`.
//!
//! One task per client of [`clients`], each client with a pool of one (so one
//! keep-alive connection each): a task sends a GET, reads the answer whole, and sends the
//! next at once. A request counts when it started after the warm-up; the rate is those
//! requests over the time from the end of the warm-up to the last answer. Every latency
//! is kept, and the quantiles are read from them sorted (nearest rank), not estimated.
//!
//! The clients are made before any clock starts and kept from one target to the next:
//! making one costs some 45 ms of CPU (its TLS context, unused on `http://`), which,
//! made by the tasks themselves, stalled the requests of the tasks already running.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the tasks request: one of `urls`, chosen at random for each request.
pub(crate) struct Target {
    pub urls: Arc<Vec<String>>,
    /// `Authorization: Bearer` of every request, if any.
    pub bearer: Option<Arc<str>>,
}

pub(crate) struct Outcome {
    /// Answered 200 and read whole, started after the warm-up.
    pub requests: u64,
    /// Anything else (transport errors and other statuses), after the warm-up.
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the end of the warm-up to the last answer.
    pub seconds: f64,
    /// Latencies of the counted requests in nanoseconds, sorted.
    latencies: Vec<u64>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    /// The `q` quantile by nearest rank (`q` = 0.99: the latency 99% of requests did not
    /// exceed), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[i] as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies.last().map_or(f64::NAN, |&n| n as f64 / 1e6)
    }
}

struct Lane {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    last_answer: Option<Instant>,
    latencies: Vec<u64>,
}

/// splitmix64: ids chosen uniformly enough, without a dependency.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `connections` HTTP clients, one keep-alive connection each (made off the runtime's
/// threads).
pub(crate) async fn clients(connections: usize) -> anyhow::Result<Vec<reqwest::Client>> {
    tokio::task::spawn_blocking(move || {
        (0..connections)
            .map(|_| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .tcp_nodelay(true)
                    .build()
                    .map_err(anyhow::Error::from)
            })
            .collect()
    })
    .await?
}

/// Runs one closed loop per client against `target` for `warmup` (not counted), then
/// `duration`.
pub(crate) async fn run(
    clients: &[reqwest::Client],
    target: &Target,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!target.urls.is_empty(), "no URL to request");
    let start = Instant::now();
    let counted_from = start + warmup;
    let end = counted_from + duration;
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(lane, http)| {
            let http = http.clone();
            let urls = target.urls.clone();
            let bearer = target.bearer.clone();
            tokio::spawn(async move {
                let mut rng = 0x5eed_0000 + lane as u64;
                let mut out = Lane {
                    requests: 0,
                    errors: 0,
                    first_error: None,
                    last_answer: None,
                    latencies: Vec::with_capacity(4096),
                };
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let url = &urls[(next(&mut rng) % urls.len() as u64) as usize];
                    let mut req = http.get(url);
                    if let Some(key) = &bearer {
                        req = req.bearer_auth(key);
                    }
                    let result = match req.send().await {
                        Ok(r) => {
                            let status = r.status();
                            match r.bytes().await {
                                Ok(body) if status == reqwest::StatusCode::OK => Ok(body.len()),
                                Ok(body) => Err(format!(
                                    "{url}: {status}: {}",
                                    String::from_utf8_lossy(&body[..body.len().min(200)])
                                )),
                                Err(e) => Err(format!("{url}: reading the answer: {e}")),
                            }
                        }
                        Err(e) => Err(format!("{url}: {e}")),
                    };
                    let answered = Instant::now();
                    if sent < counted_from {
                        continue;
                    }
                    out.last_answer = Some(answered);
                    match result {
                        Ok(_) => {
                            out.requests += 1;
                            out.latencies.push(
                                u64::try_from((answered - sent).as_nanos()).unwrap_or(u64::MAX),
                            );
                        }
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(e);
                        }
                    }
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        first_error: None,
        seconds: 0.0,
        latencies: Vec::new(),
    };
    let mut last = counted_from;
    for task in tasks {
        let lane = task.await??;
        outcome.requests += lane.requests;
        outcome.errors += lane.errors;
        if outcome.first_error.is_none() {
            outcome.first_error = lane.first_error;
        }
        last = last.max(lane.last_answer.unwrap_or(counted_from));
        outcome.latencies.extend(lane.latencies);
    }
    outcome.seconds = (last - counted_from).as_secs_f64();
    outcome.latencies.sort_unstable();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(latencies_ms: &[u64]) -> Outcome {
        let mut latencies: Vec<u64> = latencies_ms.iter().map(|ms| ms * 1_000_000).collect();
        latencies.sort_unstable();
        Outcome {
            requests: latencies.len() as u64,
            errors: 0,
            first_error: None,
            seconds: 2.0,
            latencies,
        }
    }

    #[test]
    fn quantiles_are_nearest_rank_over_every_latency() {
        let o = outcome(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(o.quantile_ms(0.5), 50.0);
        assert_eq!(o.quantile_ms(0.99), 99.0);
        assert_eq!(o.quantile_ms(1.0), 100.0);
        assert_eq!(o.max_ms(), 100.0);
        assert_eq!(o.per_second(), 50.0);
        let one = outcome(&[7]);
        assert_eq!((one.quantile_ms(0.5), one.quantile_ms(0.99)), (7.0, 7.0));
        assert!(outcome(&[]).quantile_ms(0.99).is_nan());
    }

    #[test]
    fn ids_are_spread_over_the_range() {
        let mut state = 1;
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[(next(&mut state) % 10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
