export * as HfFixture from "./HfFixture.js"
export * as TinyModel from "./TinyModel.js"
