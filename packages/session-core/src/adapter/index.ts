/**
 * The adapter-author API: what a framework adapter calls. Applications import from the package
 * root; adapters (ours and third-party ones) from `@sessionlocal/session-core/adapter`.
 */
export {
  RequestScope,
  openRequestScope,
  checkRequestSessionOptions,
  reopenRequestScope,
  runOutsideSession,
  runListenersInScope,
  httpErrorFor,
  reportCommitFailure,
  routeOptionsResolver,
  type ResponseLike,
  type RequestSessionOptions,
  type RouteSessionOptions,
  type RequestOutcome,
  type RequestResult,
  type HttpError,
  type FinishMode,
  type ReadYourWritesCarrier,
} from '../request-scope.js';
export { responseHolder, renderHttpError, type ResponseHolder } from './hold-response.js';
export { applyResponseHeaders, mergeSetCookie, type HeaderTarget } from '../response-headers.js';
export { requestProperty } from './request-property.js';
export { beforeCall } from './before-call.js';
export { mount, mountedOn, enterScope, joinRequestGroup, runRoute, runInScope, type Mounted } from './mounted.js';
