// Reads a UI message stream from a URL with the `ai` package's own client code (the chunk
// schema check useChat's transport applies, then readUIMessageStream) and prints one JSON line:
// {"header": <x-vercel-ai-ui-message-stream>, "chunks": [...], "message": <the last snapshot>}.
// Any validation or stream error is printed to stderr and the exit status is 1.
// Usage: node read_ui_stream.mjs <url> [package]   (package: "ai" or an alias such as "ai-5.0.0")

const [url, packageName = "ai"] = process.argv.slice(2);
const { DefaultChatTransport, readUIMessageStream } = await import(packageName);

const errors = [];
const response = await fetch(url);
if (!response.ok) {
  console.error(`status ${response.status}`);
  process.exit(1);
}
const transport = new DefaultChatTransport({ api: url });
const chunkStream = transport.processResponseStream(response.body);
const [forReader, forLog] = chunkStream.tee();
const chunks = [];
const logged = (async () => {
  for await (const chunk of forLog) chunks.push(chunk);
})().catch((error) => errors.push(String(error)));
let message = null;
try {
  for await (const snapshot of readUIMessageStream({
    stream: forReader,
    onError: (error) => errors.push(String(error)),
    terminateOnError: true,
  })) {
    message = snapshot;
  }
} catch (error) {
  errors.push(String(error));
}
await logged;
if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(1);
}
console.log(
  JSON.stringify({
    header: response.headers.get("x-vercel-ai-ui-message-stream"),
    chunks,
    message,
  }),
);
