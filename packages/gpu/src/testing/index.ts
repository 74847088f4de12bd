export * as HfFixture from "./HfFixture.js"
