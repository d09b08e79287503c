//! The fleet model: `clients` lbkit balancers over the same `servers` backends, Poisson traffic
//! from each, every pick held for an exponential service time in simulated time, then the
//! churn of three membership changes.
//!
//! Nothing here reads a clock: time is a `Duration` carried by the event queue, so a seed
//! replays the same run on every machine. The servers are not modelled beyond counting: a pick
//! is held (counted in flight by the balancer that made it) for its service time and then
//! dropped, with no queue at the server, so what differs between modes is only where the
//! clients send their requests.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use lbkit::{Aperture, Backend, Balancer, Error, Pick, RendezvousSubset, Request, Subset};
use lbkit::{LeastConnections, PowerOfTwoChoices, RoundRobin};

#[path = "../common/rng.rs"]
mod rng;
pub use rng::Rng;

/// One value of `seed` and `stream`, decorrelated: the seed of a client's policy, a
/// client's rendezvous salt, and so on.
pub fn derive(seed: u64, stream: u64) -> u64 {
    Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// Which backends each client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every client over every server: the full mesh.
    All,
    /// Deterministic aperture: client `i` of `clients`, with the configured minimum aperture.
    Aperture,
    /// Rendezvous subsetting: the configured subset size, a salt per client.
    Rendezvous,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 3] = [Mode::All, Mode::Aperture, Mode::Rendezvous];

    /// The mode's name in the table and the charts.
    pub fn name(self) -> &'static str {
        match self {
            Mode::All => "all (no subset)",
            Mode::Aperture => "aperture",
            Mode::Rendezvous => "rendezvous",
        }
    }
}

/// The policy every client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    PowerOfTwoChoices,
    LeastConnections,
}

impl Policy {
    /// The policy named `name` on the command line (`round-robin`, `p2c`,
    /// `least-connections`).
    pub fn parse(name: &str) -> Option<Policy> {
        match name {
            "round-robin" => Some(Policy::RoundRobin),
            "p2c" => Some(Policy::PowerOfTwoChoices),
            "least-connections" => Some(Policy::LeastConnections),
            _ => None,
        }
    }

    /// The policy's type name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "RoundRobin",
            Policy::PowerOfTwoChoices => "PowerOfTwoChoices",
            Policy::LeastConnections => "LeastConnections",
        }
    }
}

/// The scenario.
#[derive(Debug, Clone)]
pub struct Config {
    pub clients: usize,
    pub servers: usize,
    /// Requests each client sends.
    pub requests: usize,
    pub seed: u64,
    /// The aperture's minimum number of servers per client.
    pub min_aperture: usize,
    /// Rendezvous subset size.
    pub subset_size: usize,
    pub policy: Policy,
    /// Mean time between two requests of one client (Poisson arrivals).
    pub interarrival: Duration,
    /// Mean time a request holds its pick (exponential).
    pub service: Duration,
    /// Share of the clients that restart with new coordinates in the third churn scenario.
    pub restart_share: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clients: 1_000,
            servers: 1_000,
            requests: 200,
            seed: 1,
            min_aperture: 12,
            subset_size: 12,
            policy: Policy::PowerOfTwoChoices,
            // 100 requests per second per client, each held 50 ms: 5 in flight per client
            // on average, so P2C and least connections have in-flight counts to compare.
            interarrival: Duration::from_millis(10),
            service: Duration::from_millis(50),
            restart_share: 0.1,
        }
    }
}

impl Config {
    /// Checks the values the simulation cannot run with.
    pub fn check(&self) -> Result<(), String> {
        if self.clients == 0 || self.servers < 2 {
            return Err("need at least 1 client and 2 servers".into());
        }
        if self.requests == 0 {
            return Err("--requests must be at least 1".into());
        }
        if self.min_aperture == 0 || self.subset_size == 0 {
            return Err("--min-aperture and --subset-size must be at least 1".into());
        }
        if self.interarrival.is_zero() || self.service.is_zero() {
            return Err("the mean inter-arrival and service times must be above 0".into());
        }
        Ok(())
    }

    /// Client `client`'s subset rule under `mode`; `generation` 0 at start, 1 after a restart
    /// (a new salt for rendezvous).
    pub fn subset(&self, mode: Mode, client: usize, peer_index: usize, generation: u64) -> Subset {
        match mode {
            Mode::All => Subset::All,
            Mode::Aperture => Subset::Aperture(
                Aperture::new(peer_index, self.clients).min_aperture(self.min_aperture),
            ),
            Mode::Rendezvous => Subset::Rendezvous(
                RendezvousSubset::new(self.subset_size)
                    .salt(derive(self.seed, (client as u64) << 8 | generation)),
            ),
        }
    }
}

/// Server `i`'s id: `s0000`, `s0001`, ... (zero-padded to 4 digits, so id order is index
/// order for up to 10,000 servers).
pub fn server_id(i: usize) -> String {
    format!("s{i:04}")
}

/// The index of a server from its id.
pub fn server_index(id: &str) -> usize {
    id[1..].parse().expect("ids are server_id's")
}

/// The backends of servers `0..n` but `without`, plus `with`.
pub fn backends(n: usize, without: Option<usize>, with: Option<usize>) -> Vec<Backend<usize>> {
    (0..n)
        .filter(|&i| Some(i) != without)
        .chain(with)
        .map(|i| Backend::new(server_id(i), i))
        .collect()
}

/// One client's balancer.
pub fn build(
    config: &Config,
    subset: Subset,
    client: usize,
    backends: Vec<Backend<usize>>,
) -> Result<Box<dyn Balancer<usize>>, Error> {
    Ok(match config.policy {
        Policy::RoundRobin => Box::new(RoundRobin::builder().subset(subset).build(backends)?),
        Policy::LeastConnections => {
            Box::new(LeastConnections::builder().subset(subset).build(backends)?)
        }
        Policy::PowerOfTwoChoices => Box::new(
            PowerOfTwoChoices::builder()
                .seed(derive(config.seed, 1 << 40 | client as u64))
                .subset(subset)
                .build(backends)?,
        ),
    })
}

/// Each client's subset: the sorted server indices of its `status()`.
pub fn subsets(clients: &[Box<dyn Balancer<usize>>]) -> Vec<Vec<usize>> {
    clients
        .iter()
        .map(|lb| {
            let mut s: Vec<usize> = lb.status().iter().map(|s| server_index(s.id())).collect();
            s.sort_unstable();
            s
        })
        .collect()
}

/// How the client-server pairs (connections) changed between two views of every client's
/// subset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Churn {
    /// Pairs before the change.
    pub before: usize,
    /// Pairs that ended (in a subset before, not after).
    pub closed: usize,
    /// Pairs that began.
    pub opened: usize,
    /// The most pairs one client changed (closed + opened).
    pub worst_client: usize,
}

impl Churn {
    /// Between `before` and `after` (one sorted subset per client, in client order).
    pub fn between(before: &[Vec<usize>], after: &[Vec<usize>]) -> Churn {
        let mut churn = Churn::default();
        for (b, a) in before.iter().zip(after) {
            let kept = b.iter().filter(|s| a.binary_search(s).is_ok()).count();
            churn.before += b.len();
            churn.closed += b.len() - kept;
            churn.opened += a.len() - kept;
            churn.worst_client = churn.worst_client.max(b.len() + a.len() - 2 * kept);
        }
        churn
    }

    /// Pairs changed: closed plus opened.
    pub fn changed(&self) -> usize {
        self.closed + self.opened
    }

    /// [`Churn::changed`] as a share of the pairs before.
    pub fn share(&self) -> f64 {
        self.changed() as f64 / self.before.max(1) as f64
    }
}

/// What one mode's run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: Mode,
    /// Per server: distinct clients that picked it at least once.
    pub connections: Vec<usize>,
    /// Per server: clients whose subset (`status()`) holds it at the start, the connections
    /// a client that pre-connects to its subset opens.
    pub in_subsets: Vec<usize>,
    /// Per server: picks it served.
    pub load: Vec<u64>,
    /// Per client: `status().len()` at the start.
    pub subset_sizes: Vec<usize>,
    /// Picks still counted in flight, summed over every client's `status()`, after the run
    /// drained (0 unless accounting leaks).
    pub in_flight_after: usize,
    /// Picks that found no backend (0 unless something is wrong).
    pub no_pick: usize,
    /// The server removed, and the churn of removing it.
    pub removed: (usize, Churn),
    /// The churn of adding one server.
    pub added: Churn,
    /// The clients restarted, and the churn of their restart.
    pub restarted: (usize, Churn),
}

/// The mean of `values`.
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, count) = values
        .into_iter()
        .fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    sum / count.max(1) as f64
}

/// The `q` quantile of `values` (nearest rank).
pub fn quantile<N: Copy + Ord>(values: &[N], q: f64) -> N {
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

impl Outcome {
    /// Load max / mean.
    pub fn load_max(&self) -> f64 {
        quantile(&self.load, 1.0) as f64 / self.load_mean()
    }

    /// Load p99 / mean.
    pub fn load_p99(&self) -> f64 {
        quantile(&self.load, 0.99) as f64 / self.load_mean()
    }

    /// Load per server: mean.
    pub fn load_mean(&self) -> f64 {
        mean(self.load.iter().map(|&l| l as f64))
    }

    /// Subset pairs per server: mean.
    pub fn in_subsets_mean(&self) -> f64 {
        mean(self.in_subsets.iter().map(|&c| c as f64))
    }

    /// Connections per server: mean.
    pub fn connections_mean(&self) -> f64 {
        mean(self.connections.iter().map(|&c| c as f64))
    }

    /// Subset size per client: mean.
    pub fn subset_mean(&self) -> f64 {
        mean(self.subset_sizes.iter().map(|&s| s as f64))
    }
}

/// An event of the simulation, ordered by time, then by kind and number (so ties replay the
/// same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: Duration,
    /// Completions before arrivals at the same instant.
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The request held in this slot completes.
    Done { slot: usize },
    /// Client `client` sends its next request.
    Arrive { client: usize },
}

/// Runs `mode`: builds every client, sends the traffic, drains it, then measures the churn.
pub fn run(config: &Config, mode: Mode) -> Result<Outcome, Error> {
    let (n, m) = (config.clients, config.servers);
    let clients: Vec<Box<dyn Balancer<usize>>> = (0..n)
        .map(|c| {
            build(
                config,
                config.subset(mode, c, c, 0),
                c,
                backends(m, None, None),
            )
        })
        .collect::<Result<_, _>>()?;
    let start = subsets(&clients);
    let subset_sizes = start.iter().map(Vec::len).collect();
    let mut in_subsets = vec![0usize; m];
    for &s in start.iter().flatten() {
        in_subsets[s] += 1;
    }

    // Traffic. One arrival stream per client (its own generator, so the streams do not depend
    // on the mode), one service-time generator per client too.
    let mut arrivals: Vec<Rng> = (0..n)
        .map(|c| Rng::new(derive(config.seed, 2 << 40 | c as u64)))
        .collect();
    let mut services: Vec<Rng> = (0..n)
        .map(|c| Rng::new(derive(config.seed, 3 << 40 | c as u64)))
        .collect();
    let mut sent = vec![0usize; n];
    let mut queue = BinaryHeap::new();
    for (c, rng) in arrivals.iter_mut().enumerate() {
        let at = config.interarrival.mul_f64(rng.exp());
        queue.push(Reverse(Event {
            at,
            kind: Kind::Arrive { client: c },
        }));
    }
    // Held picks, by slot, with a free list; and what each server saw.
    let mut held: Vec<Option<(Pick<usize>, usize)>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut picked = vec![false; n * m];
    let mut load = vec![0u64; m];
    let mut in_flight = vec![0usize; m];
    let mut no_pick = 0;
    while let Some(Reverse(event)) = queue.pop() {
        match event.kind {
            Kind::Done { slot } => {
                let (pick, server) = held[slot].take().expect("a held slot");
                drop(pick);
                in_flight[server] -= 1;
                free.push(slot);
            }
            Kind::Arrive { client } => {
                sent[client] += 1;
                if sent[client] < config.requests {
                    let next = event.at + config.interarrival.mul_f64(arrivals[client].exp());
                    queue.push(Reverse(Event {
                        at: next,
                        kind: Kind::Arrive { client },
                    }));
                }
                let Some(pick) = clients[client].pick(&Request::new()) else {
                    no_pick += 1;
                    continue;
                };
                let server = *pick.value();
                picked[client * m + server] = true;
                load[server] += 1;
                in_flight[server] += 1;
                let slot = free.pop().unwrap_or_else(|| {
                    held.push(None);
                    held.len() - 1
                });
                held[slot] = Some((pick, server));
                let done = event.at + config.service.mul_f64(services[client].exp());
                queue.push(Reverse(Event {
                    at: done,
                    kind: Kind::Done { slot },
                }));
            }
        }
    }
    let connections = (0..m)
        .map(|s| (0..n).filter(|&c| picked[c * m + s]).count())
        .collect();
    let in_flight_after = clients
        .iter()
        .flat_map(|lb| lb.status())
        .map(|s| s.in_flight())
        .sum();

    // Churn. Each change is applied to every client, measured, and undone.
    let mut rng = Rng::new(derive(config.seed, 4 << 40));
    let removed = rng.below(m);
    for lb in &clients {
        lb.update(backends(m, Some(removed), None))?;
    }
    let after_remove = Churn::between(&start, &subsets(&clients));
    for lb in &clients {
        lb.update(backends(m, None, Some(m)))?;
    }
    let after_add = subsets(&clients);
    // From the full set to the full set plus one (the removed one is back).
    let added = Churn::between(&start, &after_add);
    for lb in &clients {
        lb.update(backends(m, None, None))?;
    }
    // Restarts: a seeded sample of the clients. Under aperture the restarted clients take one
    // another's peer indices (each the next one's in the sample's random order, so every
    // index stays in use once and each restarted client gets a new one); under rendezvous
    // each draws a new salt; without subsetting a restart keeps the same (full) subset.
    let restarts = ((n as f64 * config.restart_share).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..restarts {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let sample = &order[..restarts];
    for (i, &c) in sample.iter().enumerate() {
        let peer_index = sample[(i + 1) % restarts];
        clients[c].set_subset(config.subset(mode, c, peer_index, 1))?;
    }
    let restarted = Churn::between(&start, &subsets(&clients));

    Ok(Outcome {
        mode,
        connections,
        load,
        subset_sizes,
        in_flight_after,
        no_pick,
        in_subsets,
        removed: (removed, after_remove),
        added,
        restarted: (restarts, restarted),
    })
}
