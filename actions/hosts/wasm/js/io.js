// The JavaScript I/O primitives the WASM module's ports are built on (actions/hosts/wasm/src/js.rs):
// Kafka through kafkajs, Redis through node-redis's client (`@redis/client`, without the
// modules the `redis` package adds), HTTP through fetch (webhooks through node:http with a
// public-address lookup), and a timer.
// One Io per (brokers, Redis URL), kept for the container's life, so warm activations reuse
// their connections. Errors are thrown as Error objects with `transient: true` when a retry
// may succeed (connection loss, broker/leader changes, Redis LOADING/TRYAGAIN/BUSY).
'use strict';

// Loaded on first use: an action that never touches Kafka (status, push, a refused query)
// does not pay for evaluating kafkajs at cold start, nor one without Redis for the client.
let kafkajs = null;
let redis = null;
const loadKafka = () => (kafkajs ??= require('kafkajs'));
const loadRedis = () => (redis ??= require('@redis/client'));
const dns = require('node:dns');
const http = require('node:http');
const https = require('node:https');

// kafkajs has no public "fetch from an offset without a consumer group" call; its Cluster (what
// its consumers use) does: a Fetch request to the partition leader. The Client keeps its
// cluster factory behind a Symbol.
function createCluster(kafka) {
  const sym = Object.getOwnPropertySymbols(kafka).find(
    (s) => s.description === 'private:Kafka:createCluster',
  );
  if (!sym) throw new Error('this kafkajs version has no cluster factory');
  return kafka[sym]({ allowAutoTopicCreation: false, isolationLevel: 1 /* read_committed */ });
}

function transient(err, yes) {
  const e = err instanceof Error ? err : new Error(String(err));
  e.transient = yes;
  return e;
}

function kafkaError(err) {
  // kafkajs marks retriable protocol and connection errors.
  return transient(err, !!(err && (err.retriable || /connect|ECONN|timeout|closed/i.test(err.message))));
}

class Io {
  // Nothing connects before the first call (the module checks the settings first).
  constructor(brokers, redisUrl) {
    this.brokers = brokers;
    this.redisUrl = redisUrl;
    this.kafka = null;
    this.admin = null;
    this.cluster = null;
    this.producer = null;
    this.redisClient = null;
    this.redisReady = null;
  }

  async ensureKafka() {
    if (!this.kafka) {
      const { Kafka, logLevel } = loadKafka();
      this.kafka = new Kafka({
        clientId: 'kappa',
        brokers: this.brokers.split(',').map((b) => b.trim()).filter(Boolean),
        logLevel: logLevel.ERROR,
        retry: { retries: 3, initialRetryTime: 100 },
      });
    }
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    if (!this.cluster) {
      const cluster = createCluster(this.kafka);
      await cluster.connect();
      this.cluster = cluster;
    }
  }

  async partitions(topic) {
    try {
      await this.ensureKafka();
      const topics = await this.admin.listTopics();
      if (!topics.includes(topic)) return null;
      const md = await this.admin.fetchTopicMetadata({ topics: [topic] });
      return md.topics[0].partitions.length;
    } catch (e) {
      throw kafkaError(e);
    }
  }

  // Create `topic` with `partitions` unless it exists; answers its partition count.
  async createTopic(topic, partitions) {
    try {
      await this.ensureKafka();
      // Ask first: kafkajs logs an ERROR for every CreateTopics of an existing topic.
      if (!(await this.admin.listTopics()).includes(topic)) {
        await this.admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
      }
      const md = await this.admin.fetchTopicMetadata({ topics: [topic] });
      return md.topics[0].partitions.length;
    } catch (e) {
      throw kafkaError(e);
    }
  }

  // Append the records packed in `frames` (see `unframe`) to one partition in one produce
  // request (all or none); answers the first offset as a decimal string.
  async produce(topic, partition, frames) {
    try {
      await this.ensureKafka();
      if (!this.producer) {
        const producer = this.kafka.producer({ allowAutoTopicCreation: false });
        await producer.connect();
        this.producer = producer;
      }
      const messages = unframe(frames).map((r) => ({
        partition, key: r.key, value: r.value, timestamp: String(r.timestamp),
      }));
      const [sent] = await this.producer.send({ topic, acks: -1, messages });
      return String(sent.baseOffset);
    } catch (e) {
      throw kafkaError(e);
    }
  }

  async watermarks(topic, partition) {
    try {
      await this.ensureKafka();
      const offsets = await this.admin.fetchTopicOffsets(topic);
      const p = offsets.find((o) => o.partition === partition);
      if (!p) throw transient(new Error(`no partition ${topic}/${partition}`), false);
      return { low: p.low, high: p.high };
    } catch (e) {
      throw e.transient === undefined ? kafkaError(e) : e;
    }
  }

  // One Fetch from `from` (a decimal string): the records packed as frames (see
  // actions/hosts/wasm/src/frame.rs), and the partition's low watermark and last stable offset.
  async fetch(topic, partition, from, maxBytes) {
    try {
      await this.ensureKafka();
      const cluster = this.cluster;
      await cluster.addTargetTopic(topic);
      const leaders = cluster.findLeaderForPartitions(topic, [partition]);
      const nodeId = Object.keys(leaders)[0];
      if (nodeId === undefined) throw transient(new Error(`no leader for ${topic}/${partition}`), true);
      const broker = await cluster.findBroker({ nodeId });
      const response = await broker.fetch({
        isolationLevel: 1,
        maxWaitTime: 0,
        minBytes: 1,
        maxBytes,
        topics: [{ topic, partitions: [{ partition, fetchOffset: from, maxBytes }] }],
      });
      const p = response.responses[0].partitions[0];
      return { low: p.lastStartOffset, high: p.lastStableOffset >= 0 ? p.lastStableOffset : p.highWatermark,
        outOfRange: false, frame: frames(p.messages) };
    } catch (e) {
      if (e && e.type === 'OFFSET_OUT_OF_RANGE') {
        const w = await this.watermarks(topic, partition);
        return { low: w.low, high: w.high, outOfRange: true, frame: new Uint8Array(0) };
      }
      if (e && e.type && /NOT_LEADER|LEADER_NOT_AVAILABLE|UNKNOWN_TOPIC/.test(e.type) && this.cluster) {
        this.cluster.refreshMetadata().catch(() => {});
      }
      throw e.transient === undefined ? kafkaError(e) : e;
    }
  }

  async redisClientReady() {
    try {
      if (!this.redisClient) {
        this.redisClient = loadRedis().createClient({ url: this.redisUrl, socket: { connectTimeout: 5000 } });
        this.redisClient.on('error', () => {}); // surfaced per command
      }
      if (!this.redisReady) this.redisReady = this.redisClient.connect();
      await this.redisReady;
    } catch (e) {
      this.redisReady = null;
      throw transient(e, true);
    }
    return this.redisClient;
  }

  // One command (an array of strings and Uint8Arrays); bulk replies come back as bytes.
  async redis(args) {
    const client = await this.redisClientReady();
    return sendRedis(client, args);
  }

  // Several commands in one round trip: node-redis pipelines the commands sent in the same
  // tick. Not a transaction; the first error fails the whole call.
  async redisPipeline(commands) {
    const client = await this.redisClientReady();
    return Promise.all(commands.map((args) => sendRedis(client, args)));
  }

  // `publicOnly` (a user's webhook): the connection goes only to an address the module's policy
  // accepts (`isPublicAddress`, Rust's `ports::is_public_address`), checked on the resolved
  // addresses themselves, so a name that resolves or is rebound to loopback or a private network
  // is never connected to. No redirect is followed, and at most `maxBytes` of an answer are read.
  async http(method, url, headers, body, publicOnly, maxBytes) {
    const payload = method === 'GET' || method === 'HEAD' ? undefined : body;
    if (publicOnly) return publicRequest(method, url, headers, payload, maxBytes);
    try {
      const r = await fetch(url, {
        method,
        headers: Object.fromEntries(headers),
        body: payload,
        redirect: 'manual',
        signal: AbortSignal.timeout(10000),
      });
      return { status: r.status, body: await boundedBody(r.body, maxBytes) };
    } catch (e) {
      throw transient(e, true);
    }
  }

  sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async close() {
    await Promise.allSettled([
      this.admin && this.admin.disconnect(),
      this.cluster && this.cluster.disconnect(),
      this.producer && this.producer.disconnect(),
      this.redisReady && this.redisClient.quit(),
    ]);
  }
}

async function sendRedis(client, args) {
  const argv = args.map((a) => (typeof a === 'string' ? a : Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
  try {
    const { commandOptions } = loadRedis();
    return await client.sendCommand(argv, commandOptions({ returnBuffers: true }));
  } catch (e) {
    const reply = e && e.constructor && e.constructor.name === 'ErrorReply';
    throw transient(e, !reply || /^(LOADING|TRYAGAIN|BUSY|MASTERDOWN)/.test(e.message));
  }
}

// At most `maxBytes` of a web stream; the rest is not read.
async function boundedBody(stream, maxBytes) {
  const chunks = [];
  let size = 0;
  if (stream) {
    const reader = stream.getReader();
    while (size < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      const part = value.subarray(0, maxBytes - size);
      chunks.push(part);
      size += part.length;
    }
    reader.cancel().catch(() => {});
  }
  return new Uint8Array(Buffer.concat(chunks));
}

// A lookup that keeps the public addresses of a name (none: an error that a retry cannot mend).
function publicLookup(hostname, options, callback) {
  const { isPublicAddress } = require('./kappa_wasm.js');
  dns.lookup(hostname, { all: true, verbatim: true }, (err, addresses) => {
    if (err) return callback(err);
    const allowed = addresses.filter((a) => isPublicAddress(a.address));
    if (allowed.length === 0) {
      const refused = new Error(`${hostname} resolves to no public address; refused`);
      refused.code = 'ENOTPUBLIC';
      return callback(refused);
    }
    if (options && options.all) return callback(null, allowed);
    return callback(null, allowed[0].address, allowed[0].family);
  });
}

// A webhook delivery through node:http(s) with `publicLookup` (fetch cannot take a lookup).
function publicRequest(method, url, headers, body, maxBytes) {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const client = target.protocol === 'https:' ? https : http;
    const request = client.request(
      target,
      { method, headers: Object.fromEntries(headers), lookup: publicLookup, timeout: 10000 },
      (response) => {
        const chunks = [];
        let size = 0;
        response.on('data', (chunk) => {
          const part = chunk.subarray(0, maxBytes - size);
          chunks.push(part);
          size += part.length;
          if (size >= maxBytes) response.destroy();
        });
        const done = () => resolve({ status: response.statusCode, body: new Uint8Array(Buffer.concat(chunks)) });
        response.on('end', done);
        response.on('close', done);
        response.on('error', done);
      },
    );
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (e) => reject(transient(e, e.code !== 'ENOTPUBLIC')));
    request.end(body);
  });
}

// Pack kafkajs messages as frames: offset i64 | timestamp i64 | key length i32 (-1: none) |
// value length u32 | key | value, little-endian.
function frames(messages) {
  let size = 0;
  for (const m of messages) size += 24 + (m.key ? m.key.length : 0) + (m.value ? m.value.length : 0);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const m of messages) {
    out.writeBigInt64LE(BigInt(m.offset), at);
    out.writeBigInt64LE(BigInt(m.timestamp), at + 8);
    out.writeInt32LE(m.key ? m.key.length : -1, at + 16);
    out.writeUInt32LE(m.value ? m.value.length : 0, at + 20);
    at += 24;
    if (m.key) at += m.key.copy(out, at);
    if (m.value) at += m.value.copy(out, at);
  }
  return new Uint8Array(out.buffer, out.byteOffset, at);
}

// The records of frames packed by the module (`frame::encode_new`), keys and values as Buffers
// over the same bytes.
function unframe(bytes) {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records = [];
  let at = 0;
  while (at < buf.length) {
    const timestamp = buf.readBigInt64LE(at + 8);
    const keyLength = buf.readInt32LE(at + 16);
    const valueLength = buf.readUInt32LE(at + 20);
    at += 24;
    const key = keyLength < 0 ? null : buf.subarray(at, at + keyLength);
    at += Math.max(keyLength, 0);
    records.push({ timestamp, key, value: buf.subarray(at, at + valueLength) });
    at += valueLength;
  }
  return records;
}

const cache = new Map();

// The Io for these settings (parameters first, then the environment, like the module).
function ioFor(params) {
  const pick = (k) => (params && params[k]) || process.env[k] || '';
  const key = `${pick('KAFKA_BROKERS')}\u0000${pick('REDIS_URL')}`;
  let io = cache.get(key);
  if (!io) {
    io = new Io(pick('KAFKA_BROKERS'), pick('REDIS_URL'));
    cache.set(key, io);
  }
  return io;
}

async function closeAll() {
  await Promise.allSettled([...cache.values()].map((io) => io.close()));
  cache.clear();
}

module.exports = { Io, ioFor, closeAll, frames, unframe };
