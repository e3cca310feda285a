// Child-process entry of the peer servers: `node dist/bench/peer-server.js raw|grpc|http`.
import { serve } from "./peers.js";

await serve(process.argv[2] ?? "");
