#!/usr/bin/env node
// Runs the TypeScript sources through tsx's loader, so `npx seal` works right after `npm ci`.
import { register } from "tsx/esm/api"

register()
await import("../src/bin.ts")
