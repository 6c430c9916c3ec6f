//! Token sampling: greedy, temperature, top-k, top-p, min-p and a repetition
//! penalty, in llama.cpp's order and with its CLI defaults.

/// Sampling settings. `Default` gives llama.cpp's CLI defaults.
#[derive(Debug, Clone)]
pub struct SamplerParams {
    /// 0 (or below) = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplerParams {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

/// A sampler with its own random state and recent-token history.
pub struct Sampler {
    params: SamplerParams,
    rng: SplitMix64,
    recent: Vec<u32>,
    distinct: Vec<u32>,
    candidates: Vec<(u32, f32)>,
}

/// Index of the largest value; the lowest index wins ties (as llama.cpp's greedy).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Sampler {
        Sampler {
            rng: SplitMix64(params.seed),
            params,
            recent: Vec::new(),
            distinct: Vec::new(),
            candidates: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Records a token that is part of the context (prompt or generated),
    /// for the repetition penalty.
    pub fn accept(&mut self, token: u32) {
        if self.params.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.params.repeat_last_n {
            self.recent.remove(0);
        }
        self.recent.push(token);
    }

    /// Forgets the token history (not the random state).
    pub fn reset(&mut self) {
        self.recent.clear();
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if p.repeat_penalty != 1.0 {
            // Applied once per distinct recent token, as llama.cpp does.
            self.distinct.clear();
            self.distinct.extend_from_slice(&self.recent);
            self.distinct.sort_unstable();
            self.distinct.dedup();
            for &t in &self.distinct {
                if let Some(e) = c.get_mut(t as usize) {
                    e.1 = if e.1 > 0.0 {
                        e.1 / p.repeat_penalty
                    } else {
                        e.1 * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            let best = c.iter().fold(
                (0u32, f32::NEG_INFINITY),
                |b, &(i, l)| if l > b.1 { (i, l) } else { b },
            );
            return best.0;
        }
        c.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 && p.top_k < c.len() {
            c.truncate(p.top_k);
        }
        // Softmax over what is left (before temperature, as llama.cpp's top-p / min-p see it).
        let softmax = |c: &mut Vec<(u32, f32)>, temp: f32| -> Vec<f32> {
            let max = c[0].1 / temp;
            let mut probs: Vec<f32> = c.iter().map(|&(_, l)| (l / temp - max).exp()).collect();
            let sum: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= sum);
            probs
        };
        if p.top_p < 1.0 {
            let probs = softmax(c, 1.0);
            let mut cum = 0.0;
            let mut keep = c.len();
            for (i, q) in probs.iter().enumerate() {
                cum += q;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let probs = softmax(c, 1.0);
            let thresh = probs[0] * p.min_p;
            let keep = probs.iter().take_while(|&&q| q >= thresh).count();
            c.truncate(keep.max(1));
        }
        let probs = softmax(c, p.temperature);
        let r = self.rng.next_f32();
        let mut cum = 0.0;
        for (i, q) in probs.iter().enumerate() {
            cum += q;
            if r < cum {
                return c[i].0;
            }
        }
        c[c.len() - 1].0
    }
}

/// A small, fast, seedable generator (reproducible across platforms).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_lowest_index_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        let mut s = Sampler::new(SamplerParams::greedy());
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplerParams {
                seed,
                ..Default::default()
            });
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let mut s = Sampler::new(SamplerParams {
            top_k: 1,
            ..Default::default()
        });
        assert_eq!(s.sample(&logits), argmax(&logits));
    }

    #[test]
    fn repetition_penalty_demotes_recent_tokens() {
        let mut s = Sampler::new(SamplerParams {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        });
        s.accept(0);
        assert_eq!(s.sample(&[2.0, 1.5, 0.0]), 1);
    }
}
