//! The 64 SAS emoji of the Matrix specification (`data-definitions/sas-emoji.json`, § "SAS
//! method: `emoji`"), in index order: the symbol and its English description.
//!
//! Symbols are written as escapes so that every code point, including the U+FE0F variation
//! selector some of them carry, is visible in review.

/// One SAS emoji: what to draw and its English name (translations are the app's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Emoji {
    /// The Unicode symbol (one grapheme, possibly with a variation selector).
    pub(crate) symbol: &'static str,
    /// The English description from the specification.
    pub(crate) description: &'static str,
}

/// The table, indexed by the 6-bit numbers of the emoji SAS (0 = Dog … 63 = Pin).
pub(crate) const EMOJI: [Emoji; 64] = [
    // 0 🐶
    Emoji {
        symbol: "\u{1F436}",
        description: "Dog",
    },
    // 1 🐱
    Emoji {
        symbol: "\u{1F431}",
        description: "Cat",
    },
    // 2 🦁
    Emoji {
        symbol: "\u{1F981}",
        description: "Lion",
    },
    // 3 🐎
    Emoji {
        symbol: "\u{1F40E}",
        description: "Horse",
    },
    // 4 🦄
    Emoji {
        symbol: "\u{1F984}",
        description: "Unicorn",
    },
    // 5 🐷
    Emoji {
        symbol: "\u{1F437}",
        description: "Pig",
    },
    // 6 🐘
    Emoji {
        symbol: "\u{1F418}",
        description: "Elephant",
    },
    // 7 🐰
    Emoji {
        symbol: "\u{1F430}",
        description: "Rabbit",
    },
    // 8 🐼
    Emoji {
        symbol: "\u{1F43C}",
        description: "Panda",
    },
    // 9 🐓
    Emoji {
        symbol: "\u{1F413}",
        description: "Rooster",
    },
    // 10 🐧
    Emoji {
        symbol: "\u{1F427}",
        description: "Penguin",
    },
    // 11 🐢
    Emoji {
        symbol: "\u{1F422}",
        description: "Turtle",
    },
    // 12 🐟
    Emoji {
        symbol: "\u{1F41F}",
        description: "Fish",
    },
    // 13 🐙
    Emoji {
        symbol: "\u{1F419}",
        description: "Octopus",
    },
    // 14 🦋
    Emoji {
        symbol: "\u{1F98B}",
        description: "Butterfly",
    },
    // 15 🌷
    Emoji {
        symbol: "\u{1F337}",
        description: "Flower",
    },
    // 16 🌳
    Emoji {
        symbol: "\u{1F333}",
        description: "Tree",
    },
    // 17 🌵
    Emoji {
        symbol: "\u{1F335}",
        description: "Cactus",
    },
    // 18 🍄
    Emoji {
        symbol: "\u{1F344}",
        description: "Mushroom",
    },
    // 19 🌏
    Emoji {
        symbol: "\u{1F30F}",
        description: "Globe",
    },
    // 20 🌙
    Emoji {
        symbol: "\u{1F319}",
        description: "Moon",
    },
    // 21 ☁️
    Emoji {
        symbol: "\u{2601}\u{FE0F}",
        description: "Cloud",
    },
    // 22 🔥
    Emoji {
        symbol: "\u{1F525}",
        description: "Fire",
    },
    // 23 🍌
    Emoji {
        symbol: "\u{1F34C}",
        description: "Banana",
    },
    // 24 🍎
    Emoji {
        symbol: "\u{1F34E}",
        description: "Apple",
    },
    // 25 🍓
    Emoji {
        symbol: "\u{1F353}",
        description: "Strawberry",
    },
    // 26 🌽
    Emoji {
        symbol: "\u{1F33D}",
        description: "Corn",
    },
    // 27 🍕
    Emoji {
        symbol: "\u{1F355}",
        description: "Pizza",
    },
    // 28 🎂
    Emoji {
        symbol: "\u{1F382}",
        description: "Cake",
    },
    // 29 ❤️
    Emoji {
        symbol: "\u{2764}\u{FE0F}",
        description: "Heart",
    },
    // 30 😀
    Emoji {
        symbol: "\u{1F600}",
        description: "Smiley",
    },
    // 31 🤖
    Emoji {
        symbol: "\u{1F916}",
        description: "Robot",
    },
    // 32 🎩
    Emoji {
        symbol: "\u{1F3A9}",
        description: "Hat",
    },
    // 33 👓
    Emoji {
        symbol: "\u{1F453}",
        description: "Glasses",
    },
    // 34 🔧
    Emoji {
        symbol: "\u{1F527}",
        description: "Spanner",
    },
    // 35 🎅
    Emoji {
        symbol: "\u{1F385}",
        description: "Santa",
    },
    // 36 👍
    Emoji {
        symbol: "\u{1F44D}",
        description: "Thumbs Up",
    },
    // 37 ☂️
    Emoji {
        symbol: "\u{2602}\u{FE0F}",
        description: "Umbrella",
    },
    // 38 ⌛
    Emoji {
        symbol: "\u{231B}",
        description: "Hourglass",
    },
    // 39 ⏰
    Emoji {
        symbol: "\u{23F0}",
        description: "Clock",
    },
    // 40 🎁
    Emoji {
        symbol: "\u{1F381}",
        description: "Gift",
    },
    // 41 💡
    Emoji {
        symbol: "\u{1F4A1}",
        description: "Light Bulb",
    },
    // 42 📕
    Emoji {
        symbol: "\u{1F4D5}",
        description: "Book",
    },
    // 43 ✏️
    Emoji {
        symbol: "\u{270F}\u{FE0F}",
        description: "Pencil",
    },
    // 44 📎
    Emoji {
        symbol: "\u{1F4CE}",
        description: "Paperclip",
    },
    // 45 ✂️
    Emoji {
        symbol: "\u{2702}\u{FE0F}",
        description: "Scissors",
    },
    // 46 🔒
    Emoji {
        symbol: "\u{1F512}",
        description: "Lock",
    },
    // 47 🔑
    Emoji {
        symbol: "\u{1F511}",
        description: "Key",
    },
    // 48 🔨
    Emoji {
        symbol: "\u{1F528}",
        description: "Hammer",
    },
    // 49 ☎️
    Emoji {
        symbol: "\u{260E}\u{FE0F}",
        description: "Telephone",
    },
    // 50 🏁
    Emoji {
        symbol: "\u{1F3C1}",
        description: "Flag",
    },
    // 51 🚂
    Emoji {
        symbol: "\u{1F682}",
        description: "Train",
    },
    // 52 🚲
    Emoji {
        symbol: "\u{1F6B2}",
        description: "Bicycle",
    },
    // 53 ✈️
    Emoji {
        symbol: "\u{2708}\u{FE0F}",
        description: "Aeroplane",
    },
    // 54 🚀
    Emoji {
        symbol: "\u{1F680}",
        description: "Rocket",
    },
    // 55 🏆
    Emoji {
        symbol: "\u{1F3C6}",
        description: "Trophy",
    },
    // 56 ⚽
    Emoji {
        symbol: "\u{26BD}",
        description: "Ball",
    },
    // 57 🎸
    Emoji {
        symbol: "\u{1F3B8}",
        description: "Guitar",
    },
    // 58 🎺
    Emoji {
        symbol: "\u{1F3BA}",
        description: "Trumpet",
    },
    // 59 🔔
    Emoji {
        symbol: "\u{1F514}",
        description: "Bell",
    },
    // 60 ⚓
    Emoji {
        symbol: "\u{2693}",
        description: "Anchor",
    },
    // 61 🎧
    Emoji {
        symbol: "\u{1F3A7}",
        description: "Headphones",
    },
    // 62 📁
    Emoji {
        symbol: "\u{1F4C1}",
        description: "Folder",
    },
    // 63 📌
    Emoji {
        symbol: "\u{1F4CC}",
        description: "Pin",
    },
];

/// The emoji for a 6-bit index (0..=63), as [`vodozemac::sas::SasBytes::emoji_indices`] yields.
/// `None` for anything larger, which vodozemac never returns.
pub(crate) fn emoji(index: u8) -> Option<Emoji> {
    EMOJI.get(usize::from(index)).copied()
}
