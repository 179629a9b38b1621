//! Ordering: which of the bridge's pending jobs SLURM should start first.
//!
//! The bridge does not hold jobs back: every job is in SLURM's queue at once,
//! so backfill sees all of them and fills holes with whatever fits. The
//! policy only sets the pending jobs' priorities (`assign`), inside a band
//! above the priorities SLURM gives by itself, and only where a job's
//! priority is out of order: a round in which nothing changed sends nothing,
//! and a new job costs one update, not one per job behind it.
//! This module is pure; the poller reads SLURM and applies the result.

use std::collections::{BTreeMap, HashMap};

use super::Ordering;

/// The lowest priority the bridge sets. priority/basic gives new jobs
/// 0xffff0000 minus the number of jobs before them, so an ordered job sits
/// above every job SLURM prioritised itself, and a new job waits at most
/// one poll before the policy places it.
pub const BAND_FLOOR: u32 = 0xFFFF_0100;
/// The highest (below SLURM's NO_VAL and INFINITE, which mean other things).
pub const BAND_TOP: u32 = 0xFFFF_FF00;

/// A pending job the bridge submitted, as SLURM lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The bridge's job id.
    pub job: i64,
    pub slurm_id: i64,
    /// The Unix account.
    pub user: String,
    pub cpus: u32,
    /// Requested time limit in minutes; None is unlimited.
    pub time_limit: Option<u32>,
    /// When the bridge recorded it (Unix time).
    pub submitted_at: f64,
    /// Its priority in SLURM now.
    pub priority: u32,
    /// A retry (attempt 2 or later): it goes before every first attempt.
    pub retry: bool,
}

/// The ordering policy's last word on a job, kept in its record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Ordered {
    pub policy: Ordering,
    /// The priority the bridge set in SLURM.
    pub priority: u32,
    /// e.g. "sjf: time limit 1 min, 2 of 9".
    pub why: String,
    /// When it was set (Unix time).
    pub at: f64,
}

/// One job's place and the policy's reason for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// Index into the `pending` slice given to `order`.
    pub index: usize,
    pub why: String,
}

/// The pending jobs in the order the policy wants them started, best first.
/// `usage` (what each user consumed) is read by `weighted-fair`.
/// `Ordering::Slurm` returns nothing: the bridge leaves priorities alone.
pub fn order(
    ordering: Ordering,
    user_weights: &BTreeMap<String, u32>,
    pending: &[Pending],
    usage: &Usage,
) -> Vec<Placed> {
    let mut placed = order_by_policy(ordering, user_weights, pending, usage);
    // Retries first, whatever the policy: a failed attempt restarts at
    // once instead of queueing behind others (a stable sort keeps the
    // policy's order within each group).
    placed.sort_by_key(|p| !pending[p.index].retry);
    for p in placed.iter_mut().filter(|p| pending[p.index].retry) {
        p.why = format!("retry first; {}", p.why);
    }
    placed
}

fn order_by_policy(
    ordering: Ordering,
    user_weights: &BTreeMap<String, u32>,
    pending: &[Pending],
    usage: &Usage,
) -> Vec<Placed> {
    let mut indexes: Vec<usize> = (0..pending.len()).collect();
    let by_submit = |a: &usize, b: &usize| {
        let (a, b) = (&pending[*a], &pending[*b]);
        a.submitted_at.total_cmp(&b.submitted_at).then(a.job.cmp(&b.job))
    };
    let total = pending.len();
    match ordering {
        Ordering::Slurm => Vec::new(),
        Ordering::Fifo => {
            indexes.sort_by(by_submit);
            indexes
                .into_iter()
                .enumerate()
                .map(|(k, index)| Placed { index, why: format!("fifo: {} of {total} by submit time", k + 1) })
                .collect()
        }
        Ordering::Sjf => {
            indexes.sort_by(|a, b| {
                let limit = |i: &usize| pending[*i].time_limit.unwrap_or(u32::MAX);
                limit(a).cmp(&limit(b)).then_with(|| by_submit(a, b))
            });
            indexes
                .into_iter()
                .enumerate()
                .map(|(k, index)| {
                    let limit = match pending[index].time_limit {
                        Some(m) => format!("{m} min"),
                        None => "unlimited".into(),
                    };
                    Placed { index, why: format!("sjf: time limit {limit}, {} of {total}", k + 1) }
                })
                .collect()
        }
        Ordering::WeightedFair => {
            // Virtual finish tags (weighted fair queueing) over what each
            // user consumed: a user's k-th pending job would bring them to
            // (CPU-seconds used + the expected CPU-seconds of jobs 1..=k)
            // / weight; the lowest tag goes first.
            indexes.sort_by(by_submit);
            let mut used: HashMap<&str, f64> = HashMap::new();
            let mut tagged: Vec<(f64, usize)> = Vec::with_capacity(total);
            for index in indexes {
                let job = &pending[index];
                let weight = f64::from(user_weights.get(&job.user).copied().unwrap_or(1).max(1));
                let sum = used.entry(job.user.as_str()).or_insert_with(|| usage.of(&job.user));
                *sum += f64::from(job.cpus.max(1)) * usage.typical_job_s;
                tagged.push((*sum / weight, index));
            }
            // A stable sort keeps submit order among equal tags.
            tagged.sort_by(|a, b| a.0.total_cmp(&b.0));
            tagged
                .into_iter()
                .enumerate()
                .map(|(k, (tag, index))| {
                    let job = &pending[index];
                    let weight = user_weights.get(&job.user).copied().unwrap_or(1);
                    Placed {
                        index,
                        why: format!(
                            "weighted-fair: {} weight {weight}, {:.0} CPU-s used, share tag {tag:.1}, {} of {total}",
                            job.user,
                            usage.of(&job.user),
                            k + 1
                        ),
                    }
                })
                .collect()
        }
        Ordering::RoundRobin => {
            // Each user's jobs in submit order; a job's round is its place
            // there; rounds go in turn, users in order of their first job.
            indexes.sort_by(by_submit);
            let mut seen: HashMap<&str, (usize, usize)> = HashMap::new(); // user -> (first position, count)
            let mut keyed = Vec::with_capacity(total);
            for (position, index) in indexes.into_iter().enumerate() {
                let user = pending[index].user.as_str();
                let entry = seen.entry(user).or_insert((position, 0));
                entry.1 += 1;
                keyed.push((entry.1, entry.0, index));
            }
            keyed.sort();
            keyed
                .into_iter()
                .enumerate()
                .map(|(k, (round, _, index))| Placed {
                    index,
                    why: format!("round-robin: {}'s job {round} in turn, {} of {total}", pending[index].user, k + 1),
                })
                .collect()
        }
    }
}

/// What each user's jobs consumed, in CPU-seconds that decay with a
/// half-life (as SLURM's fair-share usage does), and how long a job
/// typically runs. Fed by the poller with the jobs SLURM runs at each
/// round. Counting consumption, not the CPUs running at one moment, matters
/// because SLURM starts jobs in once-a-second passes: equal jobs end
/// together, and at that instant nobody runs anything, so a policy reading
/// only the present would hand every wave to the heaviest weight.
#[derive(Debug, Clone)]
pub struct Usage {
    by_user: HashMap<String, f64>,
    /// Mean run time of recently ended jobs (seconds), the expected cost
    /// of a pending job per CPU.
    pub typical_job_s: f64,
    /// Jobs running at the last poll: slurm id -> (user, CPUs, first seen).
    running: HashMap<i64, (String, u32, f64)>,
    at: Option<f64>,
    half_life_s: f64,
}

/// A pending job's expected run time before any job was seen to end.
const DEFAULT_JOB_S: f64 = 60.0;

impl Usage {
    pub fn new(half_life_s: f64) -> Usage {
        Usage { by_user: HashMap::new(), typical_job_s: DEFAULT_JOB_S, running: HashMap::new(), at: None, half_life_s }
    }

    /// The user's decayed CPU-seconds.
    pub fn of(&self, user: &str) -> f64 {
        self.by_user.get(user).copied().unwrap_or(0.0)
    }

    /// One poll at `now`: `running` is `(slurm id, user, cpus)` of every job
    /// SLURM runs.
    pub fn observe(&mut self, now: f64, running: &[(i64, &str, u32)]) {
        let dt = self.at.map_or(0.0, |at| (now - at).max(0.0));
        self.at = Some(now);
        let decay = 0.5f64.powf(dt / self.half_life_s.max(1.0));
        self.by_user.values_mut().for_each(|u| *u *= decay);
        self.by_user.retain(|_, u| *u > 1e-3);
        // What ran since the last poll used the interval.
        for (user, cpus, _) in self.running.values() {
            *self.by_user.entry(user.clone()).or_default() += f64::from(*cpus) * dt;
        }
        // Jobs no longer running ended: their run time feeds the estimate.
        let still: std::collections::HashSet<i64> = running.iter().map(|(id, _, _)| *id).collect();
        let ended: Vec<i64> = self.running.keys().filter(|id| !still.contains(id)).copied().collect();
        for id in ended {
            if let Some((_, _, since)) = self.running.remove(&id) {
                let ran = (now - since).max(0.1);
                self.typical_job_s = 0.7 * self.typical_job_s + 0.3 * ran;
            }
        }
        for (id, user, cpus) in running {
            self.running.entry(*id).or_insert_with(|| ((*user).to_owned(), *cpus, now));
        }
    }
}

/// New priorities for jobs in their wanted order (`current`: their SLURM
/// priorities, best first): `Some(p)` where a job must change, `None` where
/// it keeps its own. Jobs already in the band and already in order among
/// themselves (the longest such run) keep theirs; the others get values
/// spread between their kept neighbours. When the band has no room left
/// between two neighbours, every job is given a fresh, evenly spread value.
pub fn assign(current: &[u32]) -> Vec<Option<u32>> {
    let n = current.len();
    let keep = longest_decreasing_in_band(current);
    let mut result = vec![None; n];
    // Walk the runs between kept jobs (with the band's edges as sentinels).
    let mut upper = u64::from(BAND_TOP) + 1;
    let mut start = 0;
    let mut positions: Vec<usize> = keep.clone();
    positions.push(n);
    for &kept in &positions {
        let lower = if kept < n { u64::from(current[kept]) } else { u64::from(BAND_FLOOR) - 1 };
        let gap_jobs = (kept - start) as u64;
        if gap_jobs > 0 {
            // gap_jobs values strictly between lower and upper.
            if upper - lower - 1 < gap_jobs {
                return spread(n);
            }
            let step = (upper - lower) / (gap_jobs + 1);
            for (k, slot) in result[start..kept].iter_mut().enumerate() {
                *slot = Some((upper - step * (k as u64 + 1)) as u32);
            }
        }
        if kept < n {
            upper = lower;
            start = kept + 1;
        }
    }
    result
}

/// Every job a new value, evenly over the band.
fn spread(n: usize) -> Vec<Option<u32>> {
    let span = u64::from(BAND_TOP - BAND_FLOOR);
    let step = (span / (n as u64 + 1)).max(1);
    (0..n).map(|k| Some((u64::from(BAND_TOP) - step * k as u64) as u32)).collect()
}

/// Indexes of the longest strictly decreasing subsequence of the values
/// inside the band (patience sorting, O(n log n)).
fn longest_decreasing_in_band(values: &[u32]) -> Vec<usize> {
    // tails[k]: index of the smallest-ending... here "largest last value"
    // for decreasing runs of length k+1: negate to reuse increasing logic.
    let mut tails: Vec<usize> = Vec::new();
    let mut parent: Vec<Option<usize>> = vec![None; values.len()];
    for (i, &v) in values.iter().enumerate() {
        if !(BAND_FLOOR..=BAND_TOP).contains(&v) {
            continue;
        }
        // Find the first run whose last value is <= v (cannot extend).
        let pos = tails.partition_point(|&t| values[t] > v);
        if pos > 0 {
            parent[i] = Some(tails[pos - 1]);
        }
        if pos == tails.len() {
            tails.push(i);
        } else {
            tails[pos] = i;
        }
    }
    let mut out = Vec::new();
    let mut at = tails.last().copied();
    while let Some(i) = at {
        out.push(i);
        at = parent[i];
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(job: i64, user: &str, limit: u32, at: f64) -> Pending {
        Pending {
            job,
            slurm_id: job + 100,
            user: user.into(),
            cpus: 1,
            time_limit: Some(limit),
            submitted_at: at,
            priority: 1,
            retry: false,
        }
    }

    fn ids(pending: &[Pending], placed: &[Placed]) -> Vec<i64> {
        placed.iter().map(|p| pending[p.index].job).collect()
    }

    #[test]
    fn sjf_puts_short_jobs_first_and_ties_by_submit_time() {
        let pending = [job(1, "a", 10, 1.0), job(2, "a", 10, 2.0), job(3, "b", 1, 3.0), job(4, "b", 1, 4.0)];
        let placed = order(Ordering::Sjf, &BTreeMap::new(), &pending, &Usage::new(600.0));
        assert_eq!(ids(&pending, &placed), [3, 4, 1, 2]);
        assert!(placed[0].why.starts_with("sjf: time limit 1 min, 1 of 4"), "{}", placed[0].why);
        // A retry goes first.
        let mut with_retry = pending.clone();
        with_retry[1].retry = true;
        let placed = order(Ordering::Sjf, &BTreeMap::new(), &with_retry, &Usage::new(600.0));
        assert_eq!(ids(&with_retry, &placed), [2, 3, 4, 1]);
        assert!(placed[0].why.starts_with("retry first; sjf: time limit 10 min"), "{}", placed[0].why);
        let fifo = order(Ordering::Fifo, &BTreeMap::new(), &pending, &Usage::new(600.0));
        assert_eq!(ids(&pending, &fifo), [1, 2, 3, 4]);
        assert!(order(Ordering::Slurm, &BTreeMap::new(), &pending, &Usage::new(600.0)).is_empty());
    }

    #[test]
    fn round_robin_takes_every_users_first_job_before_anyones_second() {
        let pending = [
            job(1, "a", 1, 1.0),
            job(2, "a", 1, 2.0),
            job(3, "a", 1, 3.0),
            job(4, "b", 1, 4.0),
            job(5, "c", 1, 5.0),
            job(6, "b", 1, 6.0),
        ];
        let placed = order(Ordering::RoundRobin, &BTreeMap::new(), &pending, &Usage::new(600.0));
        assert_eq!(ids(&pending, &placed), [1, 4, 5, 2, 6, 3]);
    }

    #[test]
    fn weighted_fair_shares_by_weight_counting_what_was_used() {
        let pending: Vec<Pending> = (0..8).map(|i| job(i, if i < 4 { "a" } else { "b" }, 1, i as f64)).collect();
        let weights = BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 1)]);
        // a used 3 CPU-s per second for 10 s, b 1: both at their share; a's
        // next three come before b's next one.
        let mut usage = Usage::new(600.0);
        usage.observe(0.0, &[(1, "a", 3), (2, "b", 1)]);
        usage.observe(10.0, &[(1, "a", 3), (2, "b", 1)]);
        assert!((usage.of("a") - 30.0).abs() < 0.1 && (usage.of("b") - 10.0).abs() < 0.1);
        let placed = order(Ordering::WeightedFair, &weights, &pending, &usage);
        assert_eq!(ids(&pending, &placed)[..4], [0, 1, 2, 4]);
        // b far behind its share: b goes first.
        let mut behind = Usage::new(600.0);
        behind.observe(0.0, &[(1, "a", 6)]);
        behind.observe(100.0, &[]);
        let placed = order(Ordering::WeightedFair, &weights, &pending, &behind);
        assert_eq!(pending[placed[0].index].user, "b", "{:?}", placed[0]);
    }

    #[test]
    fn usage_decays_and_learns_how_long_jobs_run() {
        let mut usage = Usage::new(10.0);
        usage.observe(0.0, &[(1, "a", 2)]);
        usage.observe(2.0, &[(1, "a", 2)]);
        assert!((usage.of("a") - 4.0).abs() < 1.0);
        // Job 1 ended after 2 s: the estimate moves from 60 s towards it.
        usage.observe(4.0, &[]);
        assert!(usage.typical_job_s < 60.0 && usage.typical_job_s > 2.0, "{}", usage.typical_job_s);
        let before = usage.of("a");
        usage.observe(14.0, &[]);
        assert!((usage.of("a") - before / 2.0).abs() < 0.1, "one half-life halves it");
    }

    #[test]
    fn nothing_in_order_changes_and_a_newcomer_costs_one_update() {
        let fresh = assign(&[5, 4, 3]);
        assert!(fresh.iter().all(Option::is_some));
        let values: Vec<u32> = fresh.iter().map(|p| p.unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] > w[1]));
        assert!(values.iter().all(|v| (BAND_FLOOR..=BAND_TOP).contains(v)));
        // The same order again: no update.
        assert_eq!(assign(&values), vec![None; 3]);
        // A newcomer (outside the band) wanted second: only it changes,
        // to a value between its neighbours.
        let with_new = [values[0], 7, values[1], values[2]];
        let changes = assign(&with_new);
        assert_eq!(changes.iter().filter(|c| c.is_some()).count(), 1);
        let p = changes[1].unwrap();
        assert!(values[0] > p && p > values[1]);
        // One job moved from last to first: one update.
        let moved = [values[2], values[0], values[1]];
        assert_eq!(assign(&moved).iter().filter(|c| c.is_some()).count(), 1);
    }

    #[test]
    fn a_full_gap_respreads_everything() {
        let crowded = [BAND_TOP, BAND_TOP - 1, 5, BAND_TOP - 2];
        let changes = assign(&crowded);
        assert!(changes.iter().all(Option::is_some));
        let values: Vec<u32> = changes.iter().map(|p| p.unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] > w[1]));
    }
}
