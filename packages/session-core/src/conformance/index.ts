export { runConformanceSuite } from './suite.js';
export { scenarios, type Scenario, type ScenarioContext } from './scenarios.js';
export {
  listen,
  readBodyWithCallbacks,
  CALLBACK_JSON,
  type ConformanceAdapter,
  type ConformanceApp,
  type ConformanceKit,
  type ConformanceRoute,
  type Handler,
  type HandlerContext,
  type HandlerResult,
  type JsonResult,
  type RequestLike,
} from './kit.js';
export { request, send, readBody, type Reply, type RequestOptions } from './http.js';
