//! `atlas.html`: one self-contained page (no network, no build step, hand-written JS) that
//! shows the cards: depth-1 tiles sized by share with their top terms; choosing one shows its
//! sub-buckets and exemplars; a box filters the tiles by term. The cards are embedded as JSON.

use super::Cards;

const TEMPLATE: &str = include_str!("atlas.html");

/// The page for `cards`.
pub fn page(cards: &Cards) -> String {
    let json = serde_json::to_string(cards).expect("cards serialise");
    // Inside a <script> element only `</` could end it early.
    TEMPLATE.replace("__CARDS__", &json.replace("</", "<\\/"))
}
