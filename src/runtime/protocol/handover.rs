//! Hand-over between builds: a hub of a newer deploy (another worker URL) asks the running hub
//! for the store on a BroadcastChannel; the running one hands it over or refuses an older one.

/// This build's version. A hub that finds its store held by another hub (a tab of another
/// build: a deploy changed the worker's URL) asks for it on [`handover_channel_name`] with
/// this; the running hub hands the store over when [`may_take_over`] says so.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The BroadcastChannel on which a waiting hub asks the running one for the store.
pub fn handover_channel_name(store_id: &str) -> String {
    format!("filesync:hub-handover:{store_id}")
}

/// What hubs say on [`handover_channel_name`], as text (`ask 1.2.0`, `refuse 1.1.0 1.2.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// A hub of this version waits for the store: the holder hands it over, or refuses.
    Ask { version: String },
    /// The hub holding the store (of version `holder`) keeps it from hubs of version `asker`,
    /// an older one: they fail (`superseded`) instead of waiting until every newer tab closes.
    Refuse { asker: String, holder: String },
}

impl Handover {
    pub fn encode(&self) -> String {
        match self {
            Handover::Ask { version } => format!("ask {version}"),
            Handover::Refuse { asker, holder } => format!("refuse {asker} {holder}"),
        }
    }

    /// `None` for anything else (another library's message on the channel).
    pub fn decode(text: &str) -> Option<Handover> {
        let mut words = text.split(' ');
        let parts = [words.next(), words.next(), words.next(), words.next()];
        match parts {
            [Some("ask"), Some(v), None, None] if !v.is_empty() => Some(Handover::Ask {
                version: v.to_string(),
            }),
            [Some("refuse"), Some(a), Some(h), None] if !a.is_empty() && !h.is_empty() => {
                Some(Handover::Refuse {
                    asker: a.to_string(),
                    holder: h.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Whether a hub of version `asker` may take the store from this build: the same version or
/// a newer one (dotted numbers), never an older one, so an old tab cannot take the store back
/// from a newer deploy.
pub fn may_take_over(asker: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    !asker.is_empty() && parts(asker) >= parts(VERSION)
}
