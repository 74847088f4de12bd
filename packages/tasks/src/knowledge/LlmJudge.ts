/**
 * An LLM judge for closed-book answers, over any OpenAI-compatible chat endpoint (OpenAI, vLLM,
 * llama.cpp's server, ...). SEAL grades its SQuAD answers this way because a model trained on
 * implications rarely reproduces the gold span verbatim, so exact match undercounts.
 *
 * The API key comes from configuration only (`OPENAI_API_KEY` through Effect's `Config`, or a
 * `Redacted` passed in), so it never sits in code and never prints in logs or errors.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientResponse } from "@effect/platform"
import { Config, Duration, Effect, Either, Layer, Option, Schedule, Schema } from "effect"
import type { ConfigError, Context, Redacted } from "effect"
import type { Grade, GradingItem } from "./Grading.js"
import { Grader, GradingError, scoreAnswer } from "./Grading.js"

export interface LlmJudgeConfig {
  /** Up to and including the version path, e.g. `https://api.openai.com/v1`. */
  readonly baseUrl: string
  readonly model: string
  /** Sent as a bearer token when present; local servers usually need none. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** Bound on one request, response body included (default 60 s). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Extra attempts after a transport error, a timeout, HTTP 429 or a 5xx (default 2). */
  readonly retries?: number | undefined
  /** First back-off delay; it doubles per retry (default 1 s). */
  readonly retryDelay?: Duration.DurationInput | undefined
  /** Optional `max_tokens`; a verdict needs a handful of tokens. */
  readonly maxTokens?: number | undefined
}

const defaultTimeout = Duration.seconds(60)
const defaultRetryDelay = Duration.seconds(1)
const defaultRetries = 2

/**
 * The judge's configuration from the environment: `OPENAI_API_KEY` (optional, redacted),
 * `SEAL_JUDGE_BASE_URL` (default OpenAI), `SEAL_JUDGE_MODEL` (default `gpt-4.1`, the judge SEAL
 * used), `SEAL_JUDGE_TIMEOUT` and `SEAL_JUDGE_RETRIES`.
 */
export const judgeConfigFromEnv: Config.Config<LlmJudgeConfig> = Config.all({
  baseUrl: Config.string("SEAL_JUDGE_BASE_URL").pipe(Config.withDefault("https://api.openai.com/v1")),
  model: Config.string("SEAL_JUDGE_MODEL").pipe(Config.withDefault("gpt-4.1")),
  apiKey: Config.option(Config.redacted("OPENAI_API_KEY")).pipe(Config.map(Option.getOrUndefined)),
  timeout: Config.duration("SEAL_JUDGE_TIMEOUT").pipe(Config.withDefault(defaultTimeout)),
  retries: Config.integer("SEAL_JUDGE_RETRIES").pipe(Config.withDefault(defaultRetries))
})

const goldText = (gold: string | ReadonlyArray<string>): string =>
  typeof gold === "string" ? `Gold answer: ${gold}` : `Gold answers (any one is correct): ${gold.join(" | ")}`

/**
 * The grading prompt. Like the reference's, it asks the judge to decide from the gold answer alone
 * (no outside knowledge), to accept extra detail and other phrasings, and to reject answers that
 * miss or contradict the gold answer; the reply is one word so it parses reliably.
 */
export const judgePrompt = (item: GradingItem): string =>
  "You are grading a student's answer to a question. Decide, using only the gold answer and no " +
  "outside knowledge, whether the student's answer is correct. It may be worded differently or add " +
  "details, but it must convey the gold answer and must not contradict it.\n\n" +
  `Question: ${item.question}\n${goldText(item.gold)}\nStudent answer: ${item.prediction.trim()}\n\n` +
  "Is the student's answer correct? Reply with one word: yes or no."

/** The JSON body of the `/chat/completions` request. */
export const chatRequestBody = (config: Pick<LlmJudgeConfig, "model" | "maxTokens">, item: GradingItem) => ({
  model: config.model,
  temperature: 0,
  messages: [{ role: "user", content: judgePrompt(item) }],
  ...(config.maxTokens === undefined ? {} : { max_tokens: config.maxTokens })
})

const ChatCompletion = Schema.Struct({
  choices: Schema.NonEmptyArray(Schema.Struct({
    message: Schema.Struct({ content: Schema.NullOr(Schema.String) })
  }))
})

// Reasoning models may think out loud first; only what follows the thinking is the verdict.
const thinking = /<think(?:ing)?>[\s\S]*?<\/think(?:ing)?>/gi

/**
 * Reads a yes/no reply. "Yes." and "no, it misses the year" are clear; a reply with both words or
 * neither is an `UnclearVerdict` error rather than a guess, so a misbehaving judge shows up in the
 * run instead of silently marking answers wrong.
 */
export const parseVerdict = (reply: string): Either.Either<boolean, GradingError> => {
  const words: ReadonlyArray<string> = reply.replace(thinking, " ").toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? []
  const yes = words.includes("yes")
  const no = words.includes("no")
  if (yes !== no) return Either.right(yes)
  return Either.left(
    new GradingError({
      reason: "UnclearVerdict",
      detail: `judge reply is not a clear yes or no: ${JSON.stringify(reply.slice(0, 200))}`
    })
  )
}

const isRetryable = (e: GradingError): boolean =>
  e.reason === "Transport" || e.reason === "Timeout" ||
  (e.reason === "HttpStatus" && e.status !== undefined && (e.status === 429 || e.status >= 500))

const failStatus = (url: string, response: HttpClientResponse.HttpClientResponse) =>
  response.text.pipe(
    Effect.orElseSucceed(() => ""),
    Effect.flatMap((body) =>
      new GradingError({
        reason: "HttpStatus",
        status: response.status,
        detail: `judge endpoint ${url} answered HTTP ${response.status}${body === "" ? "" : `: ${body.slice(0, 300)}`}`
      })
    )
  )

/** Builds the judge on the provided `HttpClient`. */
export const make = (
  config: LlmJudgeConfig
): Effect.Effect<Context.Tag.Service<Grader>, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const url = `${config.baseUrl.replace(/\/+$/, "")}/chat/completions`
    const timeout = config.timeout ?? defaultTimeout
    const retries = Math.max(0, Math.floor(config.retries ?? defaultRetries))
    const backoff = Schedule.exponential(config.retryDelay ?? defaultRetryDelay).pipe(
      Schedule.intersect(Schedule.recurs(retries))
    )

    const ask = (item: GradingItem): Effect.Effect<string, GradingError> => {
      const base = HttpClientRequest.post(url).pipe(
        HttpClientRequest.acceptJson,
        HttpClientRequest.bodyUnsafeJson(chatRequestBody(config, item))
      )
      const request = config.apiKey === undefined ? base : HttpClientRequest.bearerToken(base, config.apiKey)
      return client.execute(request).pipe(
        Effect.mapError((e) =>
          new GradingError({ reason: "Transport", detail: `judge request to ${url} failed: ${e.message}` })
        ),
        Effect.flatMap((response) =>
          response.status < 200 || response.status >= 300
            ? failStatus(url, response)
            : response.json.pipe(
              Effect.flatMap(Schema.decodeUnknown(ChatCompletion)),
              Effect.mapError((e) =>
                new GradingError({
                  reason: "BadResponse",
                  detail: `judge response is not a chat completion: ${e.message}`
                })
              )
            )
        ),
        Effect.flatMap((completion) => {
          const content = completion.choices[0].message.content
          return content === null
            ? new GradingError({ reason: "BadResponse", detail: "judge response has no message content" })
            : Effect.succeed(content)
        }),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new GradingError({
              reason: "Timeout",
              detail: `judge endpoint ${url} gave no answer within ${Duration.format(timeout)}`
            })
        }),
        Effect.retry({ schedule: backoff, while: isRetryable })
      )
    }

    return Grader.of({
      method: "llm-judge",
      grade: (item) =>
        ask(item).pipe(
          Effect.flatMap((reply) =>
            Effect.map(parseVerdict(reply), (correct): Grade => ({
              method: "llm-judge",
              correct,
              score: correct ? 1 : 0,
              ...scoreAnswer(item.prediction, item.gold),
              verdict: reply
            }))
          )
        )
    })
  })

/** The judge as the `Grader`; provide an `HttpClient` (e.g. `FetchHttpClient.layer`). */
export const layer = (config: LlmJudgeConfig): Layer.Layer<Grader, never, HttpClient.HttpClient> =>
  Layer.effect(Grader, make(config))

/** The judge configured from the environment (see `judgeConfigFromEnv`). */
export const layerConfig = (
  config: Config.Config<LlmJudgeConfig> = judgeConfigFromEnv
): Layer.Layer<Grader, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(Grader, Effect.flatMap(config, make))
