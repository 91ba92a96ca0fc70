// The official OpenAI JavaScript SDK, unchanged, against Sluice.
// Usage: node sdk_roundtrip.mjs BASE_URL
import OpenAI from "openai";
import assert from "node:assert/strict";

const base = process.argv[2].replace(/\/$/, "");
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });

const r = await client.chat.completions.create({ model: "priced", messages: [{ role: "user", content: "hi js" }] });
assert.equal(r.choices[0].message.content, "echo: hi js");

const stream = await client.chat.completions.create({
  model: "priced", stream: true, stream_options: { include_usage: true },
  messages: [{ role: "user", content: "p q" }],
});
let text = "";
let usage = null;
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text, "echo: p q");
assert.equal(usage.completion_tokens, 3);

const e = await client.embeddings.create({ model: "priced", input: "x" });
assert.equal(e.data.length, 1);

const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.includes("priced"));

await assert.rejects(
  client.chat.completions.create({ model: "m", messages: [] }),
  (err) => err.status === 400 && err.param === "messages",
);
console.log("js SDK: ok");
