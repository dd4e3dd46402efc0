//! Word lists: players, hashtags, user names, text templates, places.
//!
//! Everything here is fixed (independent of the seed), so hashtag ranks and user names are the
//! same in every generated log.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Surnames of the players the generated texts talk about; `Federer` first.
pub(crate) const PLAYERS: &[&str] = &[
    "Federer",
    "Djokovic",
    "Alcaraz",
    "Sinner",
    "Medvedev",
    "Zverev",
    "Draper",
    "Fritz",
    "Rune",
    "Ruud",
    "Tsitsipas",
    "de Minaur",
    "Shelton",
    "Paul",
    "Dimitrov",
    "Hurkacz",
    "Musetti",
    "Tiafoe",
    "Rublev",
    "Mensik",
    "Fonseca",
    "Lehecka",
    "Swiatek",
    "Sabalenka",
    "Gauff",
    "Rybakina",
    "Pegula",
    "Paolini",
    "Zheng",
    "Andreeva",
    "Keys",
    "Raducanu",
    "Jabeur",
    "Vondrousova",
    "Krejcikova",
    "Muchova",
    "Ostapenko",
    "Navarro",
    "Badosa",
    "Svitolina",
];

/// Index in [`PLAYERS`] of the first woman (men before, women from here on).
pub(crate) const FIRST_WOMAN: usize = 22;

/// The head of the hashtag vocabulary, most popular first (rank 1 = `Wimbledon`).
pub(crate) const TOP_HASHTAGS: &[&str] = &[
    "Wimbledon",
    "Wimbledon2026",
    "tennis",
    "Federer",
    "Djokovic",
    "Alcaraz",
    "Sinner",
    "CentreCourt",
    "SW19",
    "Swiatek",
    "Sabalenka",
    "Gauff",
    "Medvedev",
    "Zverev",
    "Draper",
    "TennisTwitter",
    "ATP",
    "WTA",
    "Rybakina",
    "Fritz",
    "RogerFederer",
    "grasscourt",
    "StrawberriesAndCream",
    "WimbledonFinal",
    "Raducanu",
    "Rune",
    "Pegula",
    "Paolini",
    "Tsitsipas",
    "Andreeva",
    "TheChampionships",
    "Wimbledon26",
    "tenis",
    "GOAT",
    "Ruud",
    "Shelton",
    "NoleFam",
    "Jabeur",
    "Zheng",
    "Keys",
    "Vamos",
    "Queue",
    "RoyalBox",
    "HenmanHill",
    "MurrayMound",
    "No1Court",
    "tennisfans",
    "WimbledonQueue",
    "sport",
    "BBCTennis",
    "Tennis2026",
    "grandslam",
    "ServeAndVolley",
    "London",
    "Musetti",
    "Tiafoe",
    "deMinaur",
    "Dimitrov",
    "Hurkacz",
    "Rublev",
    "Mensik",
    "Fonseca",
    "Lehecka",
    "Paul",
    "Vondrousova",
    "Krejcikova",
    "Muchova",
    "Ostapenko",
    "Navarro",
    "Badosa",
    "Svitolina",
    "Federer20",
    "tennislife",
    "Wimbledon2026Final",
    "LadiesFinal",
    "GentlemensFinal",
    "AllEnglandClub",
    "Pimms",
    "rain",
    "RoofClosed",
    "Tiebreak",
    "MatchPoint",
    "Ace",
    "Hawkeye",
    "ballkids",
    "OrderOfPlay",
    "Day1",
    "QuarterFinal",
    "SemiFinal",
    "doubles",
    "juniors",
    "wheelchairtennis",
    "Nadal",
    "Murray",
    "BigThree",
    "NextGen",
    "Roland2Wimbledon",
    "Queens",
    "Eastbourne",
    "tennischannel",
];

const TAG_SUFFIXES: &[&str] =
    &["Fans", "Wins", "Army", "Nation", "Forever", "Time", "Power", "Out", "Magic", "Mania"];
const TAG_PREFIXES: &[&str] = &[
    "Tennis", "Grass", "Court", "Ace", "Match", "Set", "Love", "Deuce", "Serve", "Volley", "Rally",
    "Net", "Baseline", "Slice", "Smash", "Lob", "Drop", "Break", "Tiebreak", "Champ",
];
const TAG_TAILS: &[&str] = &[
    "Life", "Day", "Talk", "Time", "Vibes", "Goals", "Watch", "Club", "Fever", "Squad", "Moments",
    "Point", "Season", "Stars", "Heroes", "Update", "News", "Live", "Dreams", "Chat",
];
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ten", "nis", "ra", "vo", "le", "set", "ace", "gra", "su", "to", "ne", "pa",
    "ri", "do", "ba", "zu", "me", "cou", "ly", "an", "el", "or", "tri", "mo", "fi", "ga", "vel",
];

/// Vocabulary size of hashtags.
pub(crate) const VOCAB_SIZE: usize = 2000;

/// Builds the hashtag vocabulary in rank order: [`TOP_HASHTAGS`], then player and compound tags
/// and syllable words in a fixed shuffled order.
pub(crate) fn hashtag_vocab() -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out: Vec<String> = Vec::with_capacity(VOCAB_SIZE);
    for t in TOP_HASHTAGS {
        if seen.insert(t.to_ascii_lowercase()) {
            out.push((*t).to_string());
        }
    }
    let mut tail: Vec<String> = Vec::new();
    for p in PLAYERS {
        let p: String = p.split_whitespace().collect();
        for s in TAG_SUFFIXES {
            tail.push(format!("{p}{s}"));
        }
    }
    for p in TAG_PREFIXES {
        for t in TAG_TAILS {
            tail.push(format!("{p}{t}"));
        }
    }
    for d in 1..=14 {
        tail.push(format!("WimbledonDay{d}"));
        tail.push(format!("Day{d}"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0x7a66_2026);
    let shuffle = |v: &mut Vec<String>, rng: &mut ChaCha8Rng| {
        for i in (1..v.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    };
    shuffle(&mut tail, &mut rng);
    for t in tail {
        if out.len() >= VOCAB_SIZE * 3 / 5 {
            break;
        }
        if seen.insert(t.to_ascii_lowercase()) {
            out.push(t);
        }
    }
    while out.len() < VOCAB_SIZE {
        let n = 2 + (rng.next_u64() % 3) as usize;
        let mut w = String::new();
        for _ in 0..n {
            w.push_str(SYLLABLES[(rng.next_u64() % SYLLABLES.len() as u64) as usize]);
        }
        if rng.next_u64() % 4 == 0 {
            w.push_str(&(rng.next_u64() % 100).to_string());
        }
        if !contains_federer(w.as_bytes()) && seen.insert(w.to_ascii_lowercase()) {
            out.push(w);
        }
    }
    out
}

/// Whether `hay` contains "federer" in any ASCII case.
pub(crate) fn contains_federer(hay: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"federer";
    hay.windows(NEEDLE.len()).any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

/// First parts of screen names (lowercase, so the split before the capital is unambiguous).
const USER_A: &[&str] = &[
    "ace",
    "grass",
    "court",
    "tennis",
    "net",
    "lob",
    "smash",
    "slice",
    "rally",
    "deuce",
    "volley",
    "serve",
    "baseline",
    "topspin",
    "match",
    "love",
    "game",
    "set",
    "break",
    "drop",
    "chalk",
    "line",
    "umpire",
    "ball",
    "racket",
    "string",
    "centre",
    "royal",
    "sw",
    "queue",
    "pimms",
    "strawberry",
    "cream",
    "summer",
    "london",
    "green",
    "white",
    "purple",
    "rain",
    "roof",
];
/// Second parts of screen names (capitalised).
const USER_B: &[&str] = &[
    "Fan", "Lover", "Girl", "Guy", "Mum", "Dad", "Nerd", "Geek", "Queen", "King", "Kid", "Pro",
    "Coach", "Watcher", "Talk", "Chat", "Daily", "News", "Hub", "Zone", "Life", "Vibes", "Head",
    "Addict", "Junkie", "Stats", "Pod", "Cast", "Diary", "Blog", "Eye", "View", "Times", "Post",
    "Club", "Crew", "Gang", "Squad", "Nation", "World",
];

/// Number of distinct users.
pub(crate) const USERS: u64 = 50_000;

/// A bijection of `0..USERS` so that popular users do not all look alike.
fn permute_user(k: u64) -> u64 {
    (k * 7_919 + 12_345) % USERS
}

/// Screen name of user `k` (unique for `k < USERS`), written into `out`.
pub(crate) fn screen_name(k: u64, out: &mut String) {
    let h = permute_user(k);
    let a = USER_A.len() as u64;
    let b = USER_B.len() as u64;
    out.push_str(USER_A[(h % a) as usize]);
    out.push_str(USER_B[((h / a) % b) as usize]);
    let n = h / (a * b);
    if n > 0 {
        use std::fmt::Write;
        let _ = write!(out, "{n}");
    }
}

/// Display name of user `k`.
pub(crate) fn display_name(k: u64, out: &mut String) {
    let h = permute_user(k);
    let a = USER_A.len() as u64;
    let b = USER_B.len() as u64;
    let first = USER_A[(h % a) as usize];
    let mut cs = first.chars();
    if let Some(c) = cs.next() {
        out.extend(c.to_uppercase());
        out.push_str(cs.as_str());
    }
    out.push(' ');
    out.push_str(USER_B[((h / a) % b) as usize]);
    const DECOR: &[&str] = &["", "", "", " 🎾", " 🍓", " 🇬🇧", " ✨", " 🏆"];
    out.push_str(DECOR[(h % DECOR.len() as u64) as usize]);
}

/// Numeric id of user `k` (unique for `k < USERS`).
pub(crate) fn user_id(k: u64) -> u64 {
    300_000_000 + permute_user(k) * 61_813
}

/// Languages and their shares (they add up to 1).
pub(crate) const LANGS: &[(&str, f64)] = &[
    ("en", 0.55),
    ("es", 0.10),
    ("fr", 0.08),
    ("de", 0.07),
    ("ja", 0.06),
    ("it", 0.05),
    ("pt", 0.05),
    ("und", 0.04),
];

/// Text templates per language, in [`LANGS`] order. Markers: `%a`, `%b` two players, `%c` a
/// court, `%r` the round, `%s` a score.
pub(crate) const TEMPLATES: &[&[&str]] = &[
    // en
    &[
        "%a takes the first set against %b %s on %c!",
        "What a match on %c: %a beats %b %s to reach the next round.",
        "%a vs %b in the %r is exactly why we love this tournament.",
        "Unbelievable rally between %a and %b on %c right now",
        "Rain delay on the outside courts, but %c is under the roof: %a leads %b %s",
        "%a is through to the %r after beating %b %s",
        "Can't believe %b let that one slip. %a wins %s on %c.",
        "Queue update: 8,000 people waiting and %a vs %b is the match everyone wants to see",
        "Break point %a... and %b saves it with an ace down the T. %c is on its feet.",
        "My prediction for the %r: %a in four sets over %b",
        "Strawberries, sunshine and %a vs %b on %c. Perfect day.",
        "%a looked so comfortable on grass today. %s against %b, never in doubt.",
        "Hawk-Eye overturns the call and %b is furious. %a still leads %s",
        "Heartbreak for %b. %a saves three match points and wins %s in the %r!",
        "Just got my ticket for %c tomorrow, hoping for %a vs %b in the %r",
        "The crowd on %c is loving %a today",
        "%a - %b, %r, %c. Score: %s",
    ],
    // es
    &[
        "¡%a gana el primer set contra %b %s en la %c!",
        "Partidazo en %c: %a vence a %b %s y pasa de ronda.",
        "%a contra %b en %r, esto es tenis de verdad",
        "Qué punto entre %a y %b en la %c ahora mismo",
        "%a ya está en %r tras ganar a %b %s. ¡Vamos!",
    ],
    // fr
    &[
        "%a remporte le premier set face à %b %s sur le %c !",
        "Quel match sur le %c : %a bat %b %s et file au tour suivant.",
        "%a contre %b en %r, on ne va pas s'ennuyer",
        "Incroyable échange entre %a et %b sur le %c en ce moment",
        "%a est en %r après sa victoire sur %b %s",
    ],
    // de
    &[
        "%a gewinnt den ersten Satz gegen %b %s auf dem %c!",
        "Was für ein Match auf dem %c: %a schlägt %b %s.",
        "%a gegen %b im %r, das wird spannend",
        "Unglaublicher Ballwechsel zwischen %a und %b auf dem %c",
        "%a steht nach dem %s gegen %b im %r",
    ],
    // ja
    &[
        "%aが%bから第1セットを奪取！%s（%c）",
        "%cで%aが%bに%sで勝利！",
        "%r、%a対%bが楽しみすぎる",
        "%aと%bのラリーがすごい、%cは大盛り上がり",
        "ウィンブルドン%r：%a %s %b",
    ],
    // it
    &[
        "%a vince il primo set contro %b %s sul %c!",
        "Che partita sul %c: %a batte %b %s.",
        "%a contro %b nei %r, non vedo l'ora",
        "Scambio incredibile tra %a e %b sul %c",
        "%a è ai %r dopo il %s su %b. Forza!",
    ],
    // pt
    &[
        "%a vence o primeiro set contra %b %s na %c!",
        "Que jogo na %c: %a derrota %b %s.",
        "%a contra %b nas %r, vai ser épico",
        "Ponto incrível entre %a e %b na %c agora",
        "%a está nas %r depois de vencer %b %s",
    ],
    // und
    &["🎾🎾🎾", "%a 🔥🔥", "%a 🆚 %b", "%s 😱😱", "🍓🎾☀️", "%c 👏👏👏"],
];

/// Round names per language (in [`LANGS`] order), first round to final.
pub(crate) const ROUNDS: &[[&str; 7]] = &[
    [
        "first round",
        "second round",
        "third round",
        "fourth round",
        "quarter-final",
        "semi-final",
        "final",
    ],
    [
        "primera ronda",
        "segunda ronda",
        "tercera ronda",
        "octavos",
        "cuartos",
        "semifinales",
        "la final",
    ],
    [
        "premier tour",
        "deuxième tour",
        "troisième tour",
        "huitièmes",
        "quarts",
        "demi-finales",
        "finale",
    ],
    [
        "ersten Runde",
        "zweiten Runde",
        "dritten Runde",
        "Achtelfinale",
        "Viertelfinale",
        "Halbfinale",
        "Finale",
    ],
    ["1回戦", "2回戦", "3回戦", "4回戦", "準々決勝", "準決勝", "決勝"],
    ["primo turno", "secondo turno", "terzo turno", "ottavi", "quarti", "semifinali", "finale"],
    [
        "primeira rodada",
        "segunda rodada",
        "terceira rodada",
        "oitavas",
        "quartas",
        "semifinais",
        "final",
    ],
    ["R1", "R2", "R3", "R4", "QF", "SF", "F"],
];

/// Courts at the All England Club.
pub(crate) const COURTS: &[&str] =
    &["Centre Court", "No.1 Court", "No.2 Court", "No.3 Court", "Court 12", "Court 18"];

/// Short second sentences, per language (in [`LANGS`] order).
pub(crate) const COMMENTS: &[&[&str]] = &[
    &[
        "What a day of tennis.",
        "Unreal scenes.",
        "Can't wait for tomorrow.",
        "The atmosphere here is electric!",
        "Grass court tennis at its very best.",
        "Somebody get this man a towel.",
        "I need a lie down after that one.",
        "Best tournament of the year, no contest.",
        "That backhand down the line though...",
    ],
    &["¡Qué nivel!", "Increíble ambiente.", "Mañana más."],
    &["Quel niveau !", "Ambiance incroyable.", "Vivement demain."],
    &["Was für ein Niveau!", "Unglaubliche Stimmung.", "Morgen geht's weiter."],
    &["最高の試合！", "すごい雰囲気。", "明日も楽しみ。"],
    &["Che livello!", "Atmosfera incredibile.", "Domani si replica."],
    &["Que nível!", "Clima incrível.", "Amanhã tem mais."],
    &["🔥", "👏", "😍"],
];

/// Ways a Federer record names him.
pub(crate) const FEDERER_FORMS: &[&str] = &[
    "Federer",
    "Federer",
    "Roger Federer",
    "FEDERER",
    "federer",
    "#Federer",
    "@rogerfederer",
    "#RogerFederer",
    "FeDeReR",
];

/// Federer sentences per language (in [`LANGS`] order); `%f` is the form of his name.
pub(crate) const FEDERER_PHRASES: &[&[&str]] = &[
    &[
        "%f is in the Royal Box today!",
        "Still miss watching %f on this court.",
        "Nobody moved on grass like %f.",
        "%f spotted on Centre Court, the crowd gives him a standing ovation",
        "8 titles. %f will always be the king of Wimbledon.",
        "That shot was pure %f.",
    ],
    &["¡%f en el palco real!", "Nadie jugó sobre hierba como %f."],
    &["%f dans la loge royale !", "Personne n'a joué sur gazon comme %f."],
    &["%f in der Royal Box!", "Niemand spielte auf Rasen wie %f."],
    &["%fがロイヤルボックスに！", "芝の王者は%f"],
    &["%f nel Royal Box!", "Nessuno ha giocato sull'erba come %f."],
    &["%f no camarote real!", "Ninguém jogou na grama como %f."],
    &["%f 🐐🎾", "%f 👑"],
];

/// Roger Federer's account, for `user_mentions`.
pub(crate) const FEDERER_ACCOUNT: (&str, &str, u64) =
    ("rogerfederer", "Roger Federer", 1_337_785_291);

/// Twitter `place` objects for geotagged records.
pub(crate) const PLACES: &[&str] = &[
    r#"{"id":"2a6a8d5c3b63d7a1","url":"https://api.twitter.com/1.1/geo/id/2a6a8d5c3b63d7a1.json","place_type":"neighborhood","name":"Wimbledon","full_name":"Wimbledon, London","country_code":"GB","country":"United Kingdom","contained_within":[],"bounding_box":{"type":"Polygon","coordinates":[[[-0.2364,51.4099],[-0.1876,51.4099],[-0.1876,51.4381],[-0.2364,51.4381]]]},"attributes":{}}"#,
    r#"{"id":"457b4814b4240d87","url":"https://api.twitter.com/1.1/geo/id/457b4814b4240d87.json","place_type":"city","name":"London","full_name":"London, England","country_code":"GB","country":"United Kingdom","contained_within":[],"bounding_box":{"type":"Polygon","coordinates":[[[-0.187894,51.483718],[-0.109978,51.483718],[-0.109978,51.5164655],[-0.187894,51.5164655]]]},"attributes":{}}"#,
    r#"{"id":"6416b8512febefc9","url":"https://api.twitter.com/1.1/geo/id/6416b8512febefc9.json","place_type":"country","name":"United Kingdom","full_name":"United Kingdom","country_code":"GB","country":"United Kingdom","contained_within":[],"bounding_box":{"type":"Polygon","coordinates":[[[-8.662663,49.1626564],[1.768926,49.1626564],[1.768926,60.86165],[-8.662663,60.86165]]]},"attributes":{}}"#,
    r#"{"id":"206bd7fd7a3b1a1d","url":"https://api.twitter.com/1.1/geo/id/206bd7fd7a3b1a1d.json","place_type":"city","name":"Madrid","full_name":"Madrid, Comunidad de Madrid","country_code":"ES","country":"España","contained_within":[],"bounding_box":{"type":"Polygon","coordinates":[[[-3.888954,40.3120639],[-3.5179163,40.3120639],[-3.5179163,40.6435053],[-3.888954,40.6435053]]]},"attributes":{}}"#,
    r#"{"id":"09f6a7707f18e0b1","url":"https://api.twitter.com/1.1/geo/id/09f6a7707f18e0b1.json","place_type":"city","name":"Paris","full_name":"Paris, France","country_code":"FR","country":"France","contained_within":[],"bounding_box":{"type":"Polygon","coordinates":[[[2.2241006,48.8155414],[2.4699099,48.8155414],[2.4699099,48.9021461],[2.2241006,48.9021461]]]},"attributes":{}}"#,
    r#"{"id":"3078869807f9dd36","url":"https://api.twitter.com/1.1/geo/id/3078869807f9dd36.json","place_type":"city","name":"Berlin","full_name":"Berlin, Deutschland","country_code":"DE","country":"Deutschland","contained_within":[],"bounding_box":{"type":"Polygon","coordinates":[[[13.088303,52.3382448],[13.7611609,52.3382448],[13.7611609,52.6755087],[13.088303,52.6755087]]]},"attributes":{}}"#,
];
