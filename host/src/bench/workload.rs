//! Workloads: the requests a benchmark sends, in order. A JSONL file replays
//! recorded traffic; the generators make an FAQ mix (fresh, repeated and
//! paraphrased questions), MT-Bench's first turns (with reference answers
//! where MT-Bench has them), and RAG-style requests sharing one long system
//! prompt. Generators are deterministic for a seed. This module builds
//! request bodies; it sends nothing.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::error::BenchError;

/// One request of a workload.
#[derive(Debug, Clone)]
pub struct WorkItem {
    /// An OpenAI chat completions request body.
    pub request: Value,
    /// The expected answer, when the workload has one (for the quality figure).
    pub reference: Option<String>,
    /// What kind of request this is (`fresh`, `repeat`, `paraphrase`, an MT-Bench category...).
    pub tag: String,
}

/// A named, non-empty list of requests; a run cycles through it.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub items: Vec<WorkItem>,
}

impl Workload {
    /// Sets the model of every request.
    pub fn with_model(mut self, model: Option<&str>) -> Workload {
        if let Some(model) = model {
            for item in &mut self.items {
                item.request["model"] = json!(model);
            }
        }
        self
    }
}

fn chat(model: &str, system: Option<&str>, user: &str, max_tokens: u32) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": user}));
    json!({"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
}

/// Reads a JSONL file of chat requests. Blank lines are skipped; every other
/// line must be a JSON object with a `messages` array.
pub fn from_jsonl(path: &Path) -> Result<Workload, BenchError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::Workload { origin: origin.clone(), message: format!("cannot read it: {e}") })?;
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| BenchError::Workload { origin: format!("{origin}:{}", n + 1), message };
        let mut request: Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
        let Some(object) = request.as_object_mut() else {
            return Err(at("not a JSON object (a chat completions request)".into()));
        };
        let reference = match object.remove("reference") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(at("`reference` must be a string".into())),
        };
        match object.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {}
            _ => return Err(at("no `messages` array: not a chat completions request".into())),
        }
        object.entry("model").or_insert_with(|| json!("any"));
        object.remove("stream");
        object.remove("stream_options");
        items.push(WorkItem { request, reference, tag: "replay".into() });
    }
    if items.is_empty() {
        return Err(BenchError::Workload { origin, message: "the workload is empty: no requests in it".into() });
    }
    let name = path.file_stem().map_or_else(|| "jsonl".into(), |s| s.to_string_lossy().into_owned());
    Ok(Workload { name, items })
}

const FAQ_TOPICS: [&str; 10] = [
    "password",
    "invoice",
    "API key",
    "subscription plan",
    "billing address",
    "two-factor authentication",
    "data export",
    "team invitation",
    "webhook endpoint",
    "storage quota",
];

/// Question templates, each with two paraphrases.
const FAQ_TEMPLATES: [[&str; 3]; 6] = [
    ["How do I change my {}?", "What is the way to update my {}?", "Can you tell me how to modify my {}?"],
    ["Where can I find my {}?", "Where is my {} shown?", "How do I locate my {}?"],
    ["Why did my {} stop working?", "What could make my {} fail suddenly?", "My {} no longer works, why?"],
    ["Is there a limit on my {}?", "Does my {} have a maximum?", "How far can my {} go before it is capped?"],
    ["Who else can see my {}?", "Which people have access to my {}?", "Is my {} visible to my colleagues?"],
    ["How do I delete my {}?", "What are the steps to remove my {}?", "Can I get rid of my {}, and how?"],
];

const FAQ_SYSTEM: &str = "You are the support assistant of Acme Cloud. Answer in at most two sentences.";

/// An FAQ mix: `repeat_share` of the requests repeat an earlier question word
/// for word, `paraphrase_share` rephrase one, the rest ask something new.
pub fn faq(n: usize, repeat_share: f64, paraphrase_share: f64, max_tokens: u32, seed: u64) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut asked: Vec<(usize, usize)> = Vec::new(); // (template, topic)
    let mut fresh = 0usize;
    let total = FAQ_TOPICS.len() * FAQ_TEMPLATES.len();
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let roll = rng.f64();
        let (question, tag) = if !asked.is_empty() && roll < repeat_share {
            let (t, s) = asked[rng.usize(..asked.len())];
            (FAQ_TEMPLATES[t][0].replace("{}", FAQ_TOPICS[s]), "repeat")
        } else if !asked.is_empty() && roll < repeat_share + paraphrase_share {
            let (t, s) = asked[rng.usize(..asked.len())];
            (FAQ_TEMPLATES[t][1 + rng.usize(..2)].replace("{}", FAQ_TOPICS[s]), "paraphrase")
        } else {
            // Walk the template × topic grid in a scrambled but complete order.
            let k = (fresh * 37) % total;
            let (t, s) = (k % FAQ_TEMPLATES.len(), k / FAQ_TEMPLATES.len());
            let round = fresh / total;
            fresh += 1;
            asked.push((t, s));
            let q = FAQ_TEMPLATES[t][0].replace("{}", FAQ_TOPICS[s]);
            (if round == 0 { q } else { format!("{q} (account {round})") }, "fresh")
        };
        items.push(WorkItem {
            request: chat("any", Some(FAQ_SYSTEM), &question, max_tokens),
            reference: None,
            tag: tag.into(),
        });
    }
    Workload { name: "faq".into(), items }
}

/// The MT-Bench folder used when none is given.
pub fn default_mtbench_dir() -> PathBuf {
    PathBuf::from("data/mtbench")
}

/// MT-Bench's 80 questions (first turn), with the reference answer's first
/// turn where MT-Bench has one (math, reasoning, coding...).
pub fn mtbench(dir: &Path, max_tokens: u32) -> Result<Workload, BenchError> {
    let questions = dir.join("question.jsonl");
    let origin = questions.display().to_string();
    let text = std::fs::read_to_string(&questions).map_err(|e| BenchError::Workload {
        origin: origin.clone(),
        message: format!("cannot read it ({e}); run scripts/fetch-data.sh or pass --mtbench-dir"),
    })?;
    let mut references = std::collections::HashMap::new();
    if let Ok(refs) = std::fs::read_to_string(dir.join("reference_answer.jsonl")) {
        for line in refs.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            if let (Some(id), Some(turn)) =
                (v["question_id"].as_u64(), v.pointer("/choices/0/turns/0").and_then(Value::as_str))
            {
                references.insert(id, turn.to_owned());
            }
        }
    }
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| BenchError::Workload {
            origin: format!("{origin}:{}", n + 1),
            message: format!("not JSON: {e}"),
        })?;
        let Some(turn) = v.pointer("/turns/0").and_then(Value::as_str) else {
            return Err(BenchError::Workload { origin: format!("{origin}:{}", n + 1), message: "no `turns`".into() });
        };
        let id = v["question_id"].as_u64().unwrap_or(0);
        let tag = v["category"].as_str().unwrap_or("mtbench").to_owned();
        items.push(WorkItem {
            request: chat("any", None, turn, max_tokens),
            reference: references.get(&id).cloned(),
            tag,
        });
    }
    if items.is_empty() {
        return Err(BenchError::Workload { origin, message: "the workload is empty: no questions in it".into() });
    }
    Ok(Workload { name: "mtbench".into(), items })
}

const RAG_SUBJECTS: [&str; 8] = [
    "travel expenses",
    "remote work",
    "security badges",
    "parental leave",
    "laptops",
    "overtime",
    "training budgets",
    "office hours",
];

/// Requests sharing one long system prompt (a company handbook of about
/// `context_words` words) with a varying user question: the shape of RAG
/// traffic, where prefix caching and prompt compression pay off.
pub fn rag(n: usize, context_words: usize, max_tokens: u32, seed: u64) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut handbook = String::from("You answer questions using only the handbook below. Be brief.\n\nHANDBOOK\n");
    let mut words = 0;
    let mut section = 0;
    while words < context_words {
        let subject = RAG_SUBJECTS[section % RAG_SUBJECTS.len()];
        let days = 2 + rng.u32(..28);
        let amount = 50 * (1 + rng.u32(..40));
        let para = format!(
            "Section {}. On {subject}: employees may request approval up to {days} days in advance, and \
             claims above {amount} euros need a manager's written sign-off. Exceptions are reviewed monthly \
             by the operations team, who publish the decisions on the intranet. ",
            section + 1
        );
        words += para.split_whitespace().count();
        handbook.push_str(&para);
        section += 1;
    }
    let items = (0..n)
        .map(|i| {
            let subject = RAG_SUBJECTS[rng.usize(..RAG_SUBJECTS.len())];
            let question = match i % 3 {
                0 => format!("How far in advance must I request {subject}?"),
                1 => format!("Who signs off on {subject} claims?"),
                _ => format!("What is the policy on {subject}? (question {i})"),
            };
            WorkItem {
                request: chat("any", Some(&handbook), &question, max_tokens),
                reference: None,
                tag: "rag".into(),
            }
        })
        .collect();
    Workload { name: "rag".into(), items }
}
