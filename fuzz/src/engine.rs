//! The fuzzing loop: a corpus seeded with valid messages, mutated at random, each input run
//! under a panic catcher and a hang watchdog.
//!
//! It is a mutation fuzzer without coverage feedback, so it runs on stable Rust and in CI in
//! a bounded time. What stands in for coverage: inputs the decoder accepts join the corpus
//! (bounded), so mutations keep starting from well-formed messages and reach past the first
//! length or tag check. Mutations are chosen for binary formats with length prefixes and
//! varints (BARE, CBOR) and for text (JSON, URLs): bit flips, boundary bytes, runs of `0xff`,
//! cut and duplicated ranges, splices of two corpus entries.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Largest input the mutator produces; decoders see bigger ones only as a length claim.
const MAX_INPUT: usize = 16 * 1024;
/// Inputs kept in the corpus of one target.
const MAX_CORPUS: usize = 4_096;

/// One decoder under test.
pub struct Target {
    /// Name on the command line.
    pub name: &'static str,
    /// What it decodes, for `--list`.
    pub about: &'static str,
    /// Valid inputs to start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Runs the decoder on one input; `true` if it accepted it. A property the decoder must
    /// keep (a re-encoded message decodes to itself) is checked inside and panics if broken.
    pub run: fn(&[u8]) -> bool,
}

/// How one target's run ended.
pub struct Report {
    /// Inputs run.
    pub execs: u64,
    /// Inputs the decoder accepted.
    pub accepted: u64,
    /// Corpus size at the end.
    pub corpus: usize,
    /// The first failure, if any: what happened and where the input was saved.
    pub failure: Option<String>,
}

/// Watches the input being run; a run longer than the limit is a hang.
struct Watchdog {
    started_ms: AtomicU64,
    busy: AtomicBool,
    input: Mutex<Vec<u8>>,
}

/// Fuzzes `target` for `budget`, from `seed`; failures are saved under `out`.
pub fn fuzz(target: &Target, budget: Duration, seed: u64, hang: Duration, out: &PathBuf) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut seen: HashSet<u64> = corpus.iter().map(|c| hash(c)).collect();
    let mut report = Report {
        execs: 0,
        accepted: 0,
        corpus: corpus.len(),
        failure: None,
    };
    // Seeds first, unmutated: a decoder that rejects its own valid messages is a finding too,
    // but not a crash; only panics and hangs fail the run.
    let seeds: Vec<Vec<u8>> = corpus.clone();

    let epoch = Instant::now();
    let dog = Arc::new(Watchdog {
        started_ms: AtomicU64::new(0),
        busy: AtomicBool::new(false),
        input: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let dog = dog.clone();
        let stop = stop.clone();
        let out = out.clone();
        let name = target.name;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let now = epoch.elapsed().as_millis() as u64;
                if dog.busy.load(Ordering::Acquire)
                    && now.saturating_sub(dog.started_ms.load(Ordering::Acquire))
                        > hang.as_millis() as u64
                {
                    let input = dog.input.lock().map(|i| i.clone()).unwrap_or_default();
                    let path = save(&out, name, "hang", &input);
                    eprintln!(
                        "[fuzz] {name}: an input ran longer than {hang:?}; saved to {}",
                        path.display()
                    );
                    // The decoder cannot be interrupted; the process must end.
                    std::process::exit(2);
                }
            }
        })
    };

    let deadline = Instant::now() + budget;
    let mut next = seeds.into_iter();
    while Instant::now() < deadline {
        let input = match next.next() {
            Some(seed) => seed,
            None => mutate(&mut rng, &corpus),
        };
        if let Ok(mut slot) = dog.input.lock() {
            slot.clone_from(&input);
        }
        dog.started_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Release);
        dog.busy.store(true, Ordering::Release);
        let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        dog.busy.store(false, Ordering::Release);
        report.execs += 1;
        match result {
            Ok(true) => {
                report.accepted += 1;
                if corpus.len() < MAX_CORPUS && seen.insert(hash(&input)) {
                    corpus.push(input);
                }
            }
            Ok(false) => {}
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".to_owned());
                let path = save(out, target.name, "panic", &input);
                report.failure = Some(format!("{what} (input saved to {})", path.display()));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    report.corpus = corpus.len();
    report
}

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = corpus[rng.gen_range(0..corpus.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        mutate_once(rng, &mut data, corpus);
    }
    data.truncate(MAX_INPUT);
    data
}

fn mutate_once(rng: &mut StdRng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    const BOUNDARY: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x18, 0x1b, b'"', b'%'];
    let len = data.len();
    match rng.gen_range(0..10) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = BOUNDARY[rng.gen_range(0..BOUNDARY.len())];
        }
        2 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = rng.gen();
        }
        3 => {
            // A huge varint or length claim.
            let i = rng.gen_range(0..=len);
            let n = rng.gen_range(1..=10);
            data.splice(i..i, std::iter::repeat_n(0xff, n));
        }
        4 if len > 0 => {
            let a = rng.gen_range(0..len);
            let b = rng.gen_range(a..=len.min(a + 64));
            data.drain(a..b);
        }
        5 if len > 0 => {
            let a = rng.gen_range(0..len);
            let b = rng.gen_range(a..=len.min(a + 64));
            let chunk = data[a..b].to_vec();
            let at = rng.gen_range(0..=data.len());
            data.splice(at..at, chunk);
        }
        6 if len > 0 => data.truncate(rng.gen_range(0..len)),
        7 => {
            let other = &corpus[rng.gen_range(0..corpus.len())];
            let cut = rng.gen_range(0..=len);
            let from = rng.gen_range(0..=other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        8 => {
            let i = rng.gen_range(0..=len);
            let n = rng.gen_range(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            data.splice(i..i, bytes);
        }
        _ if len >= 2 => {
            // Swap two bytes: reorders fields and tags.
            let (a, b) = (rng.gen_range(0..len), rng.gen_range(0..len));
            data.swap(a, b);
        }
        _ => data.push(rng.gen()),
    }
}

fn hash(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

fn save(out: &PathBuf, target: &str, kind: &str, input: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(out);
    let path = out.join(format!("{target}-{kind}-{:016x}.bin", hash(input)));
    if let Err(err) = std::fs::write(&path, input) {
        eprintln!(
            "[fuzz] could not save the input to {}: {err}",
            path.display()
        );
    }
    path
}
