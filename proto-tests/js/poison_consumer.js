// An order-processing consumer on kafkajs, run by the poison tests as a real process:
//
//   node poison_consumer.js '{"bootstrap": "...", "topic": "t", "group": "g", "mode": "crash"}'
//
// It parses each record's value with JSON.parse inside eachMessage. What happens when that
// throws depends on mode:
//   crash  the process exits with status 3 at once (the supervisor restarts it);
//   throw  the SyntaxError leaves eachMessage: kafkajs treats it as not retriable, the
//          consumer crashes and disconnects, the process ends (the supervisor restarts it);
//   retry  the error leaves eachMessage as a retriable KafkaJSError: kafkajs fetches the
//          record again in-process, and after its retries restarts the consumer, which
//          rejoins the group;
//   ok     there is no poison.
// With fail_all the application is a broken deploy: it cannot parse any record, poison or
// not, and fails on each one as its mode says.
// commit: "each" commits after every record; "auto" lets kafkajs auto-commit every 200 ms.
// It prints one JSON object per line: start, assigned, processed, poison, crash, exit.
// SIGTERM disconnects the consumer cleanly.
'use strict'

const { Kafka, KafkaJSError, logLevel } = require('kafkajs')

const spec = JSON.parse(process.argv[2])
const mode = spec.mode || 'ok'
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function main () {
  const kafka = new Kafka({
    clientId: spec.client_id || 'orders-kafkajs',
    brokers: [spec.bootstrap],
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, log }) =>
      process.stderr.write(`kafkajs ${namespace}: ${log.message}\n`),
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  const consumer = kafka.consumer({
    groupId: spec.group,
    sessionTimeout: spec.session_timeout_ms || 6000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: spec.fetch_wait_ms || 50,
    allowAutoTopicCreation: false,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  const { GROUP_JOIN, CRASH } = consumer.events
  consumer.on(GROUP_JOIN, (e) =>
    emit({ ev: 'assigned', partitions: Object.values(e.payload.memberAssignment).flat().sort() }))
  consumer.on(CRASH, (e) =>
    emit({ ev: 'crash', error: String(e.payload.error), restart: e.payload.restart }))

  let stopping = false
  let processed = 0
  process.on('SIGTERM', () => {
    if (stopping) return
    stopping = true
    consumer.disconnect().finally(() => {
      emit({ ev: 'exit', processed })
      process.exit(0)
    })
  })

  await consumer.connect()
  await consumer.subscribe({ topics: [spec.topic], fromBeginning: true })
  emit({ ev: 'start', pid: process.pid })
  await consumer.run({
    autoCommit: spec.commit === 'auto',
    autoCommitInterval: 200,
    eachMessage: async ({ topic, partition, message }) => {
      if (stopping) throw new Error('stopping')
      const offset = Number(message.offset)
      try {
        if (spec.fail_all) throw new SyntaxError('broken deploy')
        JSON.parse(message.value.toString())
      } catch (e) {
        emit({ ev: 'poison', p: partition, o: offset })
        if (mode === 'crash') process.exit(3)
        if (mode === 'retry') throw new KafkaJSError(e, { retriable: true })
        throw e
      }
      if (spec.sleep_ms) await new Promise((resolve) => setTimeout(resolve, spec.sleep_ms))
      processed += 1
      emit({ ev: 'processed', p: partition, o: offset })
      if (spec.commit !== 'auto') {
        await consumer.commitOffsets([{ topic, partition, offset: String(offset + 1) }])
      }
    },
  })
}

main().catch((err) => {
  emit({ ev: 'error', message: String(err && err.stack ? err.stack : err) })
  process.exit(1)
})
