//! The CLIP tokenizer of the `stable_diffusion` example, shared with its test
//! (`tests/stable_diffusion.rs` checks it against transformers' `CLIPTokenizer`).

use std::path::Path;

use tokenizers::Tokenizer;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Context length of the CLIP text encoders.
pub const MAX_TOKENS: usize = 77;

/// The prompt's ids for the CLIP tokenizer in `dir` (its pad token from the folder).
pub fn clip_tokens(dir: &Path, prompt: &str) -> Result<Vec<u32>, AnyError> {
    let pad = pad_token(dir).unwrap_or_else(|| "<|endoftext|>".into());
    clip_ids(&clip_tokenizer(dir, &pad)?, prompt, &pad)
}

/// CLIP tokenization as transformers' `CLIPTokenizer(prompt, padding="max_length",
/// max_length=77, truncation=True)`: `[BOS] tokens[..75] [EOS]`, padded with `pad`.
pub fn clip_ids(tok: &Tokenizer, prompt: &str, pad: &str) -> Result<Vec<u32>, AnyError> {
    let id = |t: &str| tok.token_to_id(t).ok_or_else(|| format!("the CLIP vocabulary has no token {t}"));
    let (bos, eos, pad) = (id("<|startoftext|>")?, id("<|endoftext|>")?, id(pad)?);
    let enc = tok.encode(prompt, false).map_err(|e| format!("tokenizing the prompt: {e}"))?;
    let mut ids = vec![bos];
    ids.extend(enc.get_ids().iter().take(MAX_TOKENS - 2));
    ids.push(eos);
    ids.resize(MAX_TOKENS, pad);
    Ok(ids)
}

/// The pad token from `special_tokens_map.json` (`"!"` for SD 2.x and SDXL's second tokenizer).
pub fn pad_token(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("special_tokens_map.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    match v.get("pad_token")? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => other.get("content")?.as_str().map(str::to_string),
    }
}

/// `tokenizer.json` if the folder has one, else transformers' `CLIPTokenizer` pipeline built
/// from `vocab.json` and `merges.txt`: NFC, whitespace runs to one space, lowercase; CLIP's split
/// pattern; byte-level BPE with the `</w>` end-of-word suffix. The special tokens (start, end and
/// `pad`) are matched in the prompt before BPE, as transformers does: with the pad token `!`
/// (SD 2.x) every `!` of a prompt is a token of its own.
pub fn clip_tokenizer(dir: &Path, pad: &str) -> Result<Tokenizer, AnyError> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::normalizers::{Lowercase, Replace, Sequence, NFC};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{AddedToken, SplitDelimiterBehavior};
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return Tokenizer::from_file(&json).map_err(|e| format!("{}: {e}", json.display()).into());
    }
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    let bpe = BPE::from_file(&vocab.display().to_string(), &merges.display().to_string())
        .unk_token("<|endoftext|>".into())
        .end_of_word_suffix("</w>".into())
        .build()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut tok = Tokenizer::new(bpe);
    let ws = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ")?;
    tok.with_normalizer(Some(Sequence::new(vec![NFC.into(), ws.into(), Lowercase.into()])))?;
    let pattern = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
    let split = Split::new(SplitPattern::Regex(pattern.into()), SplitDelimiterBehavior::Removed, true)?;
    tok.with_pre_tokenizer(Some(PreSequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()])));
    let special: Vec<AddedToken> =
        ["<|startoftext|>", "<|endoftext|>", pad].iter().map(|t| AddedToken::from(t.to_string(), true)).collect();
    tok.add_special_tokens(special)?;
    Ok(tok)
}
