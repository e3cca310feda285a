/** Component RPC: server, client connections, balancing, and the wire format. */
export { type RpcAddress, formatAddress, parseAddress } from "./address.js";
export { Balancer, type BalancerOptions, type RouteOptions } from "./balancer.js";
export { type ByteCounters } from "./channel.js";
export { Connection, ConnectionPool, type ConnectionOptions, type ConnectionState, type ConnectionStats } from "./client.js";
export { DEFAULT_MAX_FRAME_SIZE, FrameError, FrameTooLargeError, RPC_PROTOCOL_VERSION } from "./frames.js";
export { type RpcLogger, silentLogger } from "./logger.js";
export { type MethodHandler, RpcServer, type RpcServerOptions, type RpcServerStats } from "./server.js";
