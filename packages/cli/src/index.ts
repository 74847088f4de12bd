export * as Cli from "./Cli.js"
export * as ErrorReport from "./ErrorReport.js"
