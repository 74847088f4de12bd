import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Layer, Redacted } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, beforeEach } from "vitest"
import type { GradingItem } from "../src/knowledge/Grading.js"
import { Grader, GradingError } from "../src/knowledge/Grading.js"
import type { LlmJudgeConfig } from "../src/knowledge/LlmJudge.js"
import * as LlmJudge from "../src/knowledge/LlmJudge.js"

interface Recorded {
  readonly method: string | undefined
  readonly url: string | undefined
  readonly headers: Http.IncomingHttpHeaders
  readonly body: any
}

type Handler = (request: Recorded, response: Http.ServerResponse) => void

// A fake OpenAI-compatible server on loopback: each test installs a handler and reads back the
// requests it received.
let handler: Handler = () => {}
let requests: Array<Recorded> = []
let server: Http.Server
let baseUrl = ""

const chatReply = (content: string | null) => ({
  id: "chatcmpl-test",
  object: "chat.completion",
  choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }]
})

const json = (response: Http.ServerResponse, status: number, body: unknown) => {
  response.writeHead(status, { "content-type": "application/json" })
  response.end(JSON.stringify(body))
}

beforeAll(async () => {
  server = Http.createServer((req, res) => {
    let data = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => (data += chunk))
    req.on("end", () => {
      const recorded: Recorded = {
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: data === "" ? undefined : JSON.parse(data)
      }
      requests.push(recorded)
      handler(recorded, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

beforeEach(() => {
  requests = []
  handler = (_, res) => json(res, 200, chatReply("yes"))
})

const item: GradingItem = {
  question: "Which NFL team represented the AFC at Super Bowl 50?",
  gold: "Denver Broncos",
  prediction: " The Broncos from Denver "
}

const config = (overrides: Partial<LlmJudgeConfig> = {}): LlmJudgeConfig => ({
  baseUrl,
  model: "judge-model",
  apiKey: Redacted.make("sk-test-secret"),
  timeout: "2 seconds",
  retries: 0,
  retryDelay: "10 millis",
  ...overrides
})

const grade = (overrides: Partial<LlmJudgeConfig> = {}, input: GradingItem = item) =>
  Effect.flatMap(Grader, (g) => g.grade(input)).pipe(
    Effect.provide(LlmJudge.layer(config(overrides)).pipe(Layer.provide(FetchHttpClient.layer)))
  )

// Live clock: the timeout and back-off must run in real time against a real socket.
describe("LlmJudge", () => {
  it.live(
    "posts an OpenAI chat completion request with temperature 0 and the key as a bearer token",
    () =>
      Effect.gen(function*() {
        const result = yield* grade({ baseUrl: `${baseUrl}/` })
        expect(requests).toHaveLength(1)
        const request = requests[0]!
        expect(request.method).toBe("POST")
        expect(request.url).toBe("/v1/chat/completions")
        expect(request.headers.authorization).toBe("Bearer sk-test-secret")
        expect(request.headers["content-type"]).toMatch(/^application\/json/)
        expect(request.body).toEqual({
          model: "judge-model",
          temperature: 0,
          messages: [{ role: "user", content: LlmJudge.judgePrompt(item) }]
        })
        const prompt: string = request.body.messages[0].content
        expect(prompt).toContain("Question: Which NFL team represented the AFC at Super Bowl 50?\n")
        expect(prompt).toContain("Gold answer: Denver Broncos\n")
        expect(prompt).toContain("Student answer: The Broncos from Denver\n")
        expect(prompt).toMatch(/yes or no\.$/)
        expect(result).toEqual({
          method: "llm-judge",
          correct: true,
          score: 1,
          exactMatch: 0,
          f1: 0.8,
          verdict: "yes"
        })
      }),
    10_000
  )

  it.live("sends no authorization header without a key, and max_tokens only when set", () =>
    Effect.gen(function*() {
      yield* grade({ apiKey: undefined, maxTokens: 4 })
      expect(requests[0]!.headers.authorization).toBeUndefined()
      expect(requests[0]!.body.max_tokens).toBe(4)
    }), 10_000)

  it.live("reads yes and no replies", () =>
    Effect.gen(function*() {
      handler = (_, res) => json(res, 200, chatReply("No, the answer names the wrong team."))
      const no = yield* grade()
      expect([no.correct, no.score]).toEqual([false, 0])
      handler = (_, res) => json(res, 200, chatReply("<think>no doubt about it</think>Yes."))
      expect((yield* grade()).correct).toBe(true)
    }), 10_000)

  it.live("fails with UnclearVerdict on a reply that is neither yes nor no", () =>
    Effect.gen(function*() {
      handler = (_, res) => json(res, 200, chatReply("The answer is partially correct."))
      const error = yield* Effect.flip(grade())
      expect(error).toBeInstanceOf(GradingError)
      expect(error.reason).toBe("UnclearVerdict")
    }), 10_000)

  it.live("turns HTTP errors into typed errors without leaking the key", () =>
    Effect.gen(function*() {
      handler = (_, res) => json(res, 401, { error: { message: "Incorrect API key provided" } })
      const error = yield* Effect.flip(grade({ retries: 3 }))
      expect(error.reason).toBe("HttpStatus")
      expect(error.status).toBe(401)
      expect(error.message).toContain("Incorrect API key provided")
      expect(error.message).not.toContain("sk-test-secret")
      // A client error is not retried.
      expect(requests).toHaveLength(1)
    }), 10_000)

  it.live("retries 5xx responses and succeeds when the server recovers", () =>
    Effect.gen(function*() {
      handler = (_, res) =>
        requests.length < 3 ? json(res, 503, { error: "overloaded" }) : json(res, 200, chatReply("yes"))
      const result = yield* grade({ retries: 2 })
      expect(result.correct).toBe(true)
      expect(requests).toHaveLength(3)
      requests = []
      handler = (_, res) => json(res, 500, { error: "down" })
      const error = yield* Effect.flip(grade({ retries: 1 }))
      expect([error.reason, error.status]).toEqual(["HttpStatus", 500])
      expect(requests).toHaveLength(2)
    }), 10_000)

  it.live("rejects bodies that are not chat completions", () =>
    Effect.gen(function*() {
      handler = (_, res) => json(res, 200, { choices: [] })
      expect((yield* Effect.flip(grade())).reason).toBe("BadResponse")
      handler = (_, res) => json(res, 200, chatReply(null))
      expect((yield* Effect.flip(grade())).reason).toBe("BadResponse")
      handler = (_, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{not json")
      }
      expect((yield* Effect.flip(grade())).reason).toBe("BadResponse")
    }), 10_000)

  it.live("bounds a request that never answers by the timeout", () =>
    Effect.gen(function*() {
      handler = () => {} // hold the request open
      const started = Date.now()
      const error = yield* Effect.flip(grade({ timeout: "200 millis", retries: 1 }))
      const elapsed = Date.now() - started
      expect(error.reason).toBe("Timeout")
      expect(requests).toHaveLength(2)
      expect(elapsed).toBeGreaterThanOrEqual(400)
      expect(elapsed).toBeLessThan(3000)
    }), 10_000)

  it.live("reports an unreachable endpoint as a transport error", () =>
    Effect.gen(function*() {
      const closed = Http.createServer()
      yield* Effect.promise(() => new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve)))
      const port = (closed.address() as AddressInfo).port
      yield* Effect.promise(() => new Promise<void>((resolve) => closed.close(() => resolve())))
      const error = yield* Effect.flip(grade({ baseUrl: `http://127.0.0.1:${port}/v1` }))
      expect(error.reason).toBe("Transport")
    }), 10_000)

  it.live("reads its configuration, key included, from Config", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(
        new Map([
          ["OPENAI_API_KEY", "sk-from-env"],
          ["SEAL_JUDGE_BASE_URL", baseUrl],
          ["SEAL_JUDGE_MODEL", "env-model"],
          ["SEAL_JUDGE_TIMEOUT", "2 seconds"],
          ["SEAL_JUDGE_RETRIES", "0"]
        ])
      )
      const loaded = yield* LlmJudge.judgeConfigFromEnv.pipe(Effect.withConfigProvider(provider))
      expect(String(loaded.apiKey)).not.toContain("sk-from-env")
      yield* Effect.flatMap(Grader, (g) => g.grade(item)).pipe(
        Effect.provide(LlmJudge.layerConfig().pipe(Layer.provide(FetchHttpClient.layer))),
        Effect.withConfigProvider(provider)
      )
      expect(requests[0]!.headers.authorization).toBe("Bearer sk-from-env")
      expect(requests[0]!.body.model).toBe("env-model")
      const defaults = yield* LlmJudge.judgeConfigFromEnv.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
      )
      expect(defaults).toMatchObject({ baseUrl: "https://api.openai.com/v1", model: "gpt-4.1", apiKey: undefined })
    }), 10_000)
})

describe("parseVerdict", () => {
  it.each([
    ["yes", true],
    ["Yes.", true],
    ["  YES\n", true],
    ["**Yes**", true],
    ["no", false],
    ["No.", false],
    ["no, it misses the year", false]
  ])("%j -> %s", (reply, expected) => {
    expect(Either.getOrThrow(LlmJudge.parseVerdict(reply))).toBe(expected)
  })

  it.each(["", "maybe", "yes and no", "Not correct", "yesterday"])("%j is unclear", (reply) => {
    const result = LlmJudge.parseVerdict(reply)
    expect(Either.isLeft(result) && result.left.reason).toBe("UnclearVerdict")
  })

  it("lists several gold answers in the prompt", () => {
    expect(LlmJudge.judgePrompt({ question: "Q?", gold: ["a", "b"], prediction: "a" })).toContain(
      "Gold answers (any one is correct): a | b\n"
    )
  })
})
