// kafkajs scenarios for the protocol tests. pytest runs one of these per process:
//
//   node scenario.js admin    '{"brokers": [...], "topic": "t", "partitions": 3}'
//   node scenario.js produce  '{"brokers": [...], "topic": "t", "codec": "gzip", "records": [...]}'
//   node scenario.js consume  '{"brokers": [...], "topic": "t", "group": "g", ...}'
//
// A spec argument starting with @ names a JSON file holding the spec instead.
// admin and produce print one JSON object on stdout. consume prints one JSON object per
// line as things happen ({"event": "join" | "record" | "committed" | "stopped" | "error"})
// and stops when it reads "stop" on stdin. Keys, values and header values travel as base64
// (null stays null). kafkajs' own log goes to stderr.
'use strict'

const fs = require('fs')
const readline = require('readline')
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')
const codecs = require('./codecs')

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

const b64 = (buf) => (buf === null || buf === undefined ? null : Buffer.from(buf).toString('base64'))
const unb64 = (s) => (s === null || s === undefined ? null : Buffer.from(s, 'base64'))
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

function client (spec) {
  return new Kafka({
    clientId: spec.clientId || 'proto-tests-kafkajs',
    brokers: spec.brokers,
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log }) =>
      process.stderr.write(`kafkajs ${namespace}: ${log.message}\n`),
    retry: { retries: 10, initialRetryTime: 100 },
  })
}

// [[key, b64value], ...] -> kafkajs headers object (a repeated key becomes an array).
function toHeaders (pairs) {
  const out = {}
  for (const [k, v] of pairs || []) {
    const value = unb64(v)
    if (k in out) out[k] = [].concat(out[k], value)
    else out[k] = value
  }
  return out
}

function fromHeaders (headers) {
  const out = []
  for (const [k, v] of Object.entries(headers || {})) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, b64(one)])
  }
  return out
}

async function admin (spec) {
  const kafka = client(spec)
  const adm = kafka.admin()
  await adm.connect()
  try {
    let created = null
    if (spec.topic) {
      created = await adm.createTopics({
        waitForLeaders: true,
        topics: [{ topic: spec.topic, numPartitions: spec.partitions || 1, replicationFactor: 1 }],
      })
    }
    const cluster = await adm.describeCluster()
    const metadata = spec.topic ? await adm.fetchTopicMetadata({ topics: [spec.topic] }) : null
    return { created, cluster, metadata }
  } finally {
    await adm.disconnect()
  }
}

async function produce (spec) {
  const kafka = client(spec)
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  try {
    const messages = spec.records.map((r) => ({
      partition: r.partition,
      key: unb64(r.key),
      value: unb64(r.value),
      headers: toHeaders(r.headers),
    }))
    const chunk = spec.chunk || messages.length
    const results = []
    for (let i = 0; i < messages.length; i += chunk) {
      const res = await producer.send({
        topic: spec.topic,
        acks: -1,
        compression: CODECS[spec.codec || 'none'],
        messages: messages.slice(i, i + chunk),
      })
      results.push(...res)
    }
    return { results }
  } finally {
    await producer.disconnect()
  }
}

async function consume (spec) {
  const kafka = client(spec)
  const consumer = kafka.consumer({
    groupId: spec.group,
    sessionTimeout: spec.sessionTimeout || 6000,
    heartbeatInterval: 1000,
    rebalanceTimeout: spec.rebalanceTimeout || 10000,
    maxWaitTimeInMs: spec.maxWaitTimeInMs || 20,
    allowAutoTopicCreation: false,
  })
  const { GROUP_JOIN, CRASH } = consumer.events
  consumer.on(GROUP_JOIN, (e) =>
    emit({ event: 'join', memberId: e.payload.memberId, assignment: e.payload.memberAssignment }))
  consumer.on(CRASH, (e) => emit({ event: 'error', message: String(e.payload.error) }))

  let taken = 0
  const max = spec.maxRecords === undefined ? Infinity : spec.maxRecords
  let stopping = null
  const stop = () => {
    if (!stopping) {
      stopping = consumer.disconnect().then(() => {
        emit({ event: 'stopped', taken })
        process.exit(0)
      })
    }
    return stopping
  }
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'stop') stop()
  }).on('close', stop)

  await consumer.connect()
  await consumer.subscribe({ topics: [spec.topic], fromBeginning: true })
  await consumer.run({
    autoCommit: !!spec.autoCommit,
    autoCommitInterval: 200,
    eachMessage: async ({ topic, partition, message }) => {
      if (taken >= max || stopping) return // not processed, so not committed
      taken += 1
      emit({
        event: 'record',
        topic,
        partition,
        offset: Number(message.offset),
        key: b64(message.key),
        value: b64(message.value),
        headers: fromHeaders(message.headers),
      })
      if (spec.commitEach) {
        const next = String(BigInt(message.offset) + 1n)
        await consumer.commitOffsets([{ topic, partition, offset: next }])
        emit({ event: 'committed', partition, offset: Number(next) })
      }
    },
  })
  emit({ event: 'running' })
}

async function main () {
  const [op, json] = process.argv.slice(2)
  // A long spec comes in a file ("@path"): argv has a size limit.
  const text = json && json.startsWith('@') ? fs.readFileSync(json.slice(1), 'utf8') : json
  const spec = JSON.parse(text || '{}')
  await codecs.register(CompressionTypes, CompressionCodecs)
  if (op === 'admin') {
    emit(await admin(spec))
    process.exit(0)
  } else if (op === 'produce') {
    emit(await produce(spec))
    process.exit(0)
  } else if (op === 'consume') await consume(spec)
  else throw new Error(`unknown scenario ${op}`)
}

main().then(
  () => {},
  (err) => {
    emit({ event: 'error', message: String(err && err.stack ? err.stack : err) })
    process.exit(1)
  })
