//! A run as a space-time diagram (issue 22): one lane per replica (the
//! twin's second instance as a lane of its own) and one for the clients,
//! virtual time downwards, every message an arrow.
//!
//! The simulator fills a [`Diagram`] only when asked (`SimOptions::diagram`,
//! `pbft-sim replay --html`): it is a side channel, never hashed and never
//! touching an RNG, so a seed's trace hash is the same with or without it.
//! [`Diagram::model`] cuts it (time window, seq range, a cap on arrows) into
//! a [`Model`] of lanes, arrows, bands and markers; [`Model::to_html`]
//! writes that as one self-contained HTML page that draws it in SVG.

use crate::consensus::messages::Message;
use serde_json::{json, Value};

/// What became of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It reached a live receiver, which took it in.
    Delivered,
    /// It arrived, but the receiver was down.
    ReceiverDown,
    /// The network never delivered it (loss, partition, Twins routing,
    /// a peer that never reads).
    Dropped(&'static str),
    /// The receiver (its codec or its consensus core) refused it.
    Refused(String),
}

impl Fate {
    fn name(&self) -> &'static str {
        match self {
            Fate::Delivered => "delivered",
            Fate::ReceiverDown => "receiver-down",
            Fate::Dropped(_) => "dropped",
            Fate::Refused(_) => "refused",
        }
    }

    fn reason(&self) -> Option<String> {
        match self {
            Fate::Dropped(r) => Some((*r).to_string()),
            Fate::Refused(r) => Some(r.clone()),
            _ => None,
        }
    }
}

/// Who made a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A correct node (or a Byzantine one's core, before its strategy).
    Honest,
    /// A Byzantine strategy let its core's message through unchanged.
    Passed,
    /// A Byzantine strategy changed its core's message.
    Rewritten,
    /// A Byzantine strategy (or client) made it up.
    Forged,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::Honest => "",
            Origin::Passed => "passed",
            Origin::Rewritten => "rewritten",
            Origin::Forged => "forged",
        }
    }
}

/// The fields of a message a hover shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub view: Option<u64>,
    pub seq: Option<u64>,
    /// The first 12 hex digits of the digest the message carries.
    pub digest: Option<String>,
    pub signer: Option<u32>,
}

impl Fields {
    /// The fields of `m` (none for a malformed payload).
    pub fn of(m: &Message) -> Fields {
        use crate::consensus::messages::*;
        use crate::crypto::Payload;
        let signer = |s: u32| Some(s);
        match m {
            Message::PrePrepare { pre_prepare, .. } => PrePrepare::decode(&pre_prepare.payload)
                .map(|p| Fields {
                    view: Some(p.view.0),
                    seq: Some(p.seq.0),
                    digest: Some(format!("{:?}", p.digest)),
                    signer: signer(pre_prepare.signer.0),
                })
                .unwrap_or_default(),
            Message::Prepare(s) => Prepare::decode(&s.payload)
                .map(|p| Fields {
                    view: Some(p.view.0),
                    seq: Some(p.seq.0),
                    digest: Some(format!("{:?}", p.digest)),
                    signer: signer(s.signer.0),
                })
                .unwrap_or_default(),
            Message::Commit(s) => Commit::decode(&s.payload)
                .map(|p| Fields {
                    view: Some(p.view.0),
                    seq: Some(p.seq.0),
                    digest: Some(format!("{:?}", p.digest)),
                    signer: signer(s.signer.0),
                })
                .unwrap_or_default(),
            Message::Checkpoint(s) => Checkpoint::decode(&s.payload)
                .map(|p| Fields {
                    view: None,
                    seq: Some(p.seq.0),
                    digest: Some(format!("{:?}", p.digest)),
                    signer: signer(s.signer.0),
                })
                .unwrap_or_default(),
            Message::ViewChange(s) => ViewChange::decode(&s.payload)
                .map(|p| Fields {
                    view: Some(p.new_view.0),
                    seq: Some(p.stable_seq.0),
                    digest: None,
                    signer: signer(s.signer.0),
                })
                .unwrap_or_default(),
            Message::NewView(s) => NewView::decode(&s.payload)
                .map(|p| Fields {
                    view: Some(p.view.0),
                    signer: signer(s.signer.0),
                    ..Fields::default()
                })
                .unwrap_or_default(),
            Message::Suspect(s) => Suspect::decode(&s.payload)
                .map(|p| Fields {
                    view: Some(p.view.0),
                    signer: signer(s.signer.0),
                    ..Fields::default()
                })
                .unwrap_or_default(),
            Message::NewViewRequest { view } => Fields {
                view: Some(view.0),
                ..Fields::default()
            },
            Message::Fetch { from, .. } => Fields {
                seq: Some(from.0),
                ..Fields::default()
            },
            Message::Batches(b) => Fields {
                seq: b.first().map(|b| b.seq.0),
                ..Fields::default()
            },
            Message::Request(_) | Message::Reply(_) => Fields::default(),
        }
    }
}

/// One thing the diagram shows. Times are virtual microseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A message from lane `from` to lane `to`, sent at `sent_us`; it
    /// arrived (or was dropped) at `at_us`.
    Message {
        sent_us: u64,
        at_us: u64,
        from: usize,
        to: usize,
        kind: &'static str,
        fields: Fields,
        fate: Fate,
        origin: Origin,
    },
    /// A replica goes down (`what`: the kind of crash, or a clean stop).
    Down {
        at_us: u64,
        lane: usize,
        what: String,
    },
    Restart {
        at_us: u64,
        lane: usize,
    },
    /// The replicas on `lanes` are cut off from the rest.
    Partition {
        start_us: u64,
        end_us: u64,
        lanes: Vec<usize>,
    },
    /// A Twins round: the replicas on `lanes` (and the twin's second
    /// instance) talk to each other; only `leader`'s proposals get through.
    TwinRound {
        start_us: u64,
        end_us: u64,
        lanes: Vec<usize>,
        leader: u32,
    },
    /// A replica enters `view`.
    View {
        at_us: u64,
        lane: usize,
        view: u64,
    },
    /// A replica's checkpoint at `seq` becomes stable.
    Checkpoint {
        at_us: u64,
        lane: usize,
        seq: u64,
    },
    /// A replica commits the block at `height` (its seq).
    Commit {
        at_us: u64,
        lane: usize,
        height: u64,
    },
    /// The checker found a violation.
    Violation {
        at_us: u64,
        text: String,
    },
    /// The faults stop.
    FaultsEnd {
        at_us: u64,
    },
}

impl Item {
    /// When the item happens (its end, for a message).
    pub fn at_us(&self) -> u64 {
        match self {
            Item::Message { at_us, .. }
            | Item::Down { at_us, .. }
            | Item::Restart { at_us, .. }
            | Item::View { at_us, .. }
            | Item::Checkpoint { at_us, .. }
            | Item::Commit { at_us, .. }
            | Item::Violation { at_us, .. }
            | Item::FaultsEnd { at_us } => *at_us,
            Item::Partition { start_us, .. } | Item::TwinRound { start_us, .. } => *start_us,
        }
    }
}

/// The recorded diagram of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagram {
    /// Lane names: replicas, the twin instance (if any), the clients.
    pub lanes: Vec<String>,
    pub items: Vec<Item>,
    /// Virtual time at the end of the run.
    pub end_us: u64,
    /// A line saying what ran (seed, scenario).
    pub title: String,
}

/// How to cut a diagram before drawing it.
#[derive(Clone, Debug)]
pub struct Cut {
    pub from_us: u64,
    pub to_us: u64,
    /// Keep only messages and commits of seqs in `lo..=hi` (messages with
    /// no seq stay).
    pub seqs: Option<(u64, u64)>,
    /// At most this many arrows; later ones are left out (and the page
    /// says so).
    pub max_arrows: usize,
}

/// The default cap on arrows embedded in one page (measured: a page with
/// this many opens in about a second in headless Chromium).
pub const MAX_ARROWS: usize = 20_000;

impl Default for Cut {
    fn default() -> Cut {
        Cut {
            from_us: 0,
            to_us: u64::MAX,
            seqs: None,
            max_arrows: MAX_ARROWS,
        }
    }
}

/// An arrow to draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrow {
    pub from: usize,
    pub to: usize,
    pub t0: u64,
    pub t1: u64,
    pub kind: &'static str,
    pub fate: Fate,
    pub origin: Origin,
    pub fields: Fields,
}

/// A band on a lane (or on several: a partition), from `t0` to `t1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Band {
    pub lanes: Vec<usize>,
    pub t0: u64,
    pub t1: u64,
    /// "CRASH …", "CLEAN STOP", "partition", "Twins round: …".
    pub what: String,
}

/// A marker on a lane at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub lane: usize,
    pub t: u64,
    /// "view", "checkpoint" or "commit".
    pub what: &'static str,
    pub value: u64,
}

/// What one page draws.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub title: String,
    pub lanes: Vec<String>,
    pub from_us: u64,
    pub to_us: u64,
    pub arrows: Vec<Arrow>,
    pub bands: Vec<Band>,
    pub marks: Vec<Mark>,
    pub violations: Vec<(u64, String)>,
    pub faults_end_us: Option<u64>,
    /// Arrows in the window left out over the cap.
    pub arrows_cut: usize,
}

impl Diagram {
    /// The lanes, arrows, bands and markers within `cut`. A message is in
    /// the window if it arrives (or is dropped) in it; a band if it
    /// overlaps it (clipped to it).
    pub fn model(&self, cut: &Cut) -> Model {
        let to_us = cut
            .to_us
            .min(self.end_us.saturating_add(1))
            .max(cut.from_us);
        let within = |t: u64| cut.from_us <= t && t < to_us;
        let seq_ok = |s: Option<u64>| match (cut.seqs, s) {
            (Some((lo, hi)), Some(s)) => lo <= s && s <= hi,
            _ => true,
        };
        let mut m = Model {
            title: self.title.clone(),
            lanes: self.lanes.clone(),
            from_us: cut.from_us,
            to_us,
            ..Model::default()
        };
        let clip = |t0: u64, t1: u64| (t0.max(cut.from_us), t1.min(to_us));
        // Down intervals, per lane, open until a restart or the end.
        let mut down: Vec<Option<(u64, String)>> = vec![None; self.lanes.len()];
        let mut bands = Vec::new();
        for item in &self.items {
            match item {
                Item::Message {
                    sent_us,
                    at_us,
                    from,
                    to,
                    kind,
                    fields,
                    fate,
                    origin,
                } if within(*at_us) && seq_ok(fields.seq) => {
                    if m.arrows.len() < cut.max_arrows {
                        m.arrows.push(Arrow {
                            from: *from,
                            to: *to,
                            t0: *sent_us,
                            t1: *at_us,
                            kind,
                            fate: fate.clone(),
                            origin: *origin,
                            fields: fields.clone(),
                        });
                    } else {
                        m.arrows_cut += 1;
                    }
                }
                Item::Down { at_us, lane, what } => {
                    down[*lane] = Some((*at_us, what.clone()));
                }
                Item::Restart { at_us, lane } => {
                    if let Some((t0, what)) = down[*lane].take() {
                        bands.push(Band {
                            lanes: vec![*lane],
                            t0,
                            t1: *at_us,
                            what,
                        });
                    }
                }
                Item::Partition {
                    start_us,
                    end_us,
                    lanes,
                } => bands.push(Band {
                    lanes: lanes.clone(),
                    t0: *start_us,
                    t1: *end_us,
                    what: "partition".into(),
                }),
                Item::TwinRound {
                    start_us,
                    end_us,
                    lanes,
                    leader,
                } => bands.push(Band {
                    lanes: lanes.clone(),
                    t0: *start_us,
                    t1: *end_us,
                    what: format!("Twins round: leader R{leader}; these lanes talk to one another"),
                }),
                Item::View { at_us, lane, view } if within(*at_us) => m.marks.push(Mark {
                    lane: *lane,
                    t: *at_us,
                    what: "view",
                    value: *view,
                }),
                Item::Checkpoint { at_us, lane, seq } if within(*at_us) && seq_ok(Some(*seq)) => {
                    m.marks.push(Mark {
                        lane: *lane,
                        t: *at_us,
                        what: "checkpoint",
                        value: *seq,
                    })
                }
                Item::Commit {
                    at_us,
                    lane,
                    height,
                } if within(*at_us) && seq_ok(Some(*height)) => m.marks.push(Mark {
                    lane: *lane,
                    t: *at_us,
                    what: "commit",
                    value: *height,
                }),
                Item::Violation { at_us, text } if within(*at_us) => {
                    m.violations.push((*at_us, text.clone()))
                }
                Item::FaultsEnd { at_us } if within(*at_us) => m.faults_end_us = Some(*at_us),
                _ => {}
            }
        }
        for (lane, d) in down.into_iter().enumerate() {
            if let Some((t0, what)) = d {
                bands.push(Band {
                    lanes: vec![lane],
                    t0,
                    t1: self.end_us,
                    what,
                });
            }
        }
        m.bands = bands
            .into_iter()
            .filter(|b| b.t0 < to_us && b.t1 > cut.from_us)
            .map(|b| {
                let (t0, t1) = clip(b.t0, b.t1);
                Band { t0, t1, ..b }
            })
            .collect();
        m
    }
}

impl Model {
    /// The model as the JSON the page embeds (arrows as arrays, kinds and
    /// reasons as indices into tables, to keep long runs small).
    pub fn to_json(&self) -> Value {
        let mut kinds: Vec<&str> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let arrows: Vec<Value> = self
            .arrows
            .iter()
            .map(|a| {
                let k = kinds.iter().position(|k| *k == a.kind).unwrap_or_else(|| {
                    kinds.push(a.kind);
                    kinds.len() - 1
                });
                let r = a.fate.reason().map(|r| {
                    reasons.iter().position(|x| *x == r).unwrap_or_else(|| {
                        reasons.push(r);
                        reasons.len() - 1
                    })
                });
                json!([
                    a.from,
                    a.to,
                    a.t0,
                    a.t1,
                    k,
                    a.fate.name(),
                    a.origin.name(),
                    a.fields.view,
                    a.fields.seq,
                    a.fields.digest,
                    a.fields.signer,
                    r
                ])
            })
            .collect();
        json!({
            "title": self.title,
            "lanes": self.lanes,
            "from": self.from_us,
            "to": self.to_us,
            "kinds": kinds,
            "reasons": reasons,
            "arrows": arrows,
            "bands": self.bands.iter().map(|b| json!([b.lanes, b.t0, b.t1, b.what])).collect::<Vec<_>>(),
            "marks": self.marks.iter().map(|k| json!([k.lane, k.t, k.what, k.value])).collect::<Vec<_>>(),
            "violations": self.violations,
            "faultsEnd": self.faults_end_us,
            "cut": self.arrows_cut,
        })
    }

    /// One self-contained HTML page: the model as JSON in a `<script>`
    /// (every `<` escaped, so no text in it can close the tag) and the
    /// script that draws it; no external URL.
    pub fn to_html(&self) -> String {
        let data = self.to_json().to_string().replace('<', "\\u003c");
        PAGE.replace("/*DATA*/", &data)
    }
}

const PAGE: &str = include_str!("diagram.html");

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(sent: u64, at: u64, from: usize, to: usize, kind: &'static str, seq: u64) -> Item {
        Item::Message {
            sent_us: sent,
            at_us: at,
            from,
            to,
            kind,
            fields: Fields {
                view: Some(0),
                seq: Some(seq),
                digest: Some("abcdef012345".into()),
                signer: Some(from as u32),
            },
            fate: Fate::Delivered,
            origin: Origin::Honest,
        }
    }

    /// A scripted run: 2 replicas and the clients; a request, a prepare
    /// that is dropped, a forged commit, a crash and a restart, a
    /// partition, a view change, a commit and a violation.
    fn scripted() -> Diagram {
        let mut forged = msg(4_000, 5_000, 1, 0, "commit", 1);
        if let Item::Message { origin, fate, .. } = &mut forged {
            *origin = Origin::Forged;
            *fate = Fate::Refused("commit: bad signature".into());
        }
        let mut dropped = msg(2_000, 2_000, 0, 1, "prepare", 1);
        if let Item::Message { fate, .. } = &mut dropped {
            *fate = Fate::Dropped("loss");
        }
        // A request carries no view, seq or signer.
        let mut request = msg(0, 1_000, 2, 0, "request", 0);
        if let Item::Message { fields, .. } = &mut request {
            *fields = Fields::default();
        }
        Diagram {
            lanes: vec!["R0".into(), "R1".into(), "clients".into()],
            items: vec![
                request,
                dropped,
                Item::Partition {
                    start_us: 3_000,
                    end_us: 9_000,
                    lanes: vec![1],
                },
                forged,
                Item::Down {
                    at_us: 6_000,
                    lane: 0,
                    what: "CRASH (kill -9)".into(),
                },
                Item::Restart {
                    at_us: 8_000,
                    lane: 0,
                },
                Item::View {
                    at_us: 8_500,
                    lane: 1,
                    view: 1,
                },
                msg(9_000, 10_000, 1, 0, "pre-prepare", 7),
                Item::Commit {
                    at_us: 11_000,
                    lane: 0,
                    height: 7,
                },
                Item::Violation {
                    at_us: 11_000,
                    text: "S1 agreement".into(),
                },
                Item::Down {
                    at_us: 12_000,
                    lane: 1,
                    what: "CLEAN STOP".into(),
                },
            ],
            end_us: 20_000,
            title: "scripted".into(),
        }
    }

    #[test]
    fn a_scripted_run_makes_exact_lanes_arrows_bands_and_marks() {
        let m = scripted().model(&Cut::default());
        assert_eq!(m.lanes, ["R0", "R1", "clients"]);
        let arrows: Vec<_> = m
            .arrows
            .iter()
            .map(|a| (a.from, a.to, a.t0, a.t1, a.kind, a.fate.name(), a.origin))
            .collect();
        assert_eq!(
            arrows,
            [
                (2, 0, 0, 1_000, "request", "delivered", Origin::Honest),
                (0, 1, 2_000, 2_000, "prepare", "dropped", Origin::Honest),
                (1, 0, 4_000, 5_000, "commit", "refused", Origin::Forged),
                (
                    1,
                    0,
                    9_000,
                    10_000,
                    "pre-prepare",
                    "delivered",
                    Origin::Honest
                ),
            ]
        );
        assert_eq!(
            m.arrows[2].fate.reason().as_deref(),
            Some("commit: bad signature")
        );
        let bands: Vec<_> = m
            .bands
            .iter()
            .map(|b| (b.lanes.clone(), b.t0, b.t1, b.what.as_str()))
            .collect();
        assert_eq!(
            bands,
            [
                (vec![1], 3_000, 9_000, "partition"),
                (vec![0], 6_000, 8_000, "CRASH (kill -9)"),
                // Never restarted: the band runs to the end of the run.
                (vec![1], 12_000, 20_000, "CLEAN STOP"),
            ]
        );
        let marks: Vec<_> = m
            .marks
            .iter()
            .map(|k| (k.lane, k.t, k.what, k.value))
            .collect();
        assert_eq!(marks, [(1, 8_500, "view", 1), (0, 11_000, "commit", 7)]);
        assert_eq!(m.violations, [(11_000, "S1 agreement".to_string())]);
        assert_eq!(m.arrows_cut, 0);
    }

    #[test]
    fn a_cut_keeps_the_window_the_seqs_and_the_cap() {
        let d = scripted();
        // 4.5 ms to 10.5 ms: the forged commit and the pre-prepare arrive
        // in it; the bands are clipped to it.
        let m = d.model(&Cut {
            from_us: 4_500,
            to_us: 10_500,
            ..Cut::default()
        });
        assert_eq!(m.arrows.len(), 2);
        let bands: Vec<_> = m.bands.iter().map(|b| (b.t0, b.t1)).collect();
        assert_eq!(bands, [(4_500, 9_000), (6_000, 8_000)]);
        assert!(m.violations.is_empty());
        // Seqs 5..=9: the request (no seq) and the pre-prepare of seq 7.
        let m = d.model(&Cut {
            seqs: Some((5, 9)),
            ..Cut::default()
        });
        let kinds: Vec<_> = m.arrows.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["request", "pre-prepare"]);
        assert_eq!(m.marks.len(), 2);
        // A cap of 3: the fourth arrow is counted as cut.
        let m = d.model(&Cut {
            max_arrows: 3,
            ..Cut::default()
        });
        assert_eq!((m.arrows.len(), m.arrows_cut), (3, 1));
    }

    #[test]
    fn the_page_embeds_escaped_data_and_no_url() {
        let mut d = scripted();
        d.title = "</script><script>alert(1)</script>".into();
        let html = d.model(&Cut::default()).to_html();
        assert!(!html.contains("</script><script>alert"));
        assert_eq!(html.matches("</script>").count(), 2);
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("\\u003c/script>"));
    }
}
