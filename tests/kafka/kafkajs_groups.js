// kafkajs consumer groups against Brooklet's Kafka listener, driven by
// tests/tests/it/kafka_client_groups.rs. Run from tests/kafka after `npm ci`.
// One scenario per run; each prints what it saw, one fact a line, and any
// failure exits non-zero with the reason. Every wait polls for a condition
// with a deadline.
//
//   resume ADDR TOPIC GROUP
//       A consumer subscribes from the beginning, reads with eachMessage and
//       commits as it goes (autoCommit); a second one resumes from there,
//       reads with eachBatch and commits explicitly; a third one resumes
//       from that commit and commits nothing.
//   reset ADDR TOPIC GROUP
//       A consumer reads and commits; kafkajs's admin client resets the
//       group to the earliest offsets, a consumer reads again from there,
//       then the admin resets it to the latest offsets. Each reset takes
//       about 5 s: kafkajs's admin waits for a fetch of its own consumer,
//       which uses kafkajs's default fetch wait.
//   split ADDR TOPIC GROUP
//       A consumer owns a 4-partition topic, a second one joins and they
//       split it; after a line on stdin the second disconnects (leaving the
//       group) and the first owns all four again, reads records produced
//       after and commits them.
//
// Values are UTF-8 text. kafkajs logs at WARN and above go to stderr, and a
// logged ERROR fails the run, but for the one a rebalance causes in Kafka
// too: a member's heartbeat answered REBALANCE_IN_PROGRESS, which kafkajs
// logs as an error before it rejoins.

'use strict'

const readline = require('readline')
const { Kafka, Partitioners, logLevel } = require('kafkajs')

// Below the calling test's deadline (30 s), so a hang is reported here.
const DEADLINE_MS = 20000

// kafkajs's own log, WARN and above, to stderr; unexpected errors are counted.
const logged = { errors: [] }
const rejoinNeeded = log =>
  log.message.startsWith('Response Heartbeat(') && log.error === 'The group is rebalancing, so a rejoin is needed'
const logCreator = () => ({ namespace, level, label, log }) => {
  const line = `${label} [${namespace}] ${log.message} ${JSON.stringify(log)}`
  if (level === logLevel.ERROR && !rejoinNeeded(log)) logged.errors.push(line)
  console.error(line)
}

function client(addr) {
  return new Kafka({
    brokers: [addr],
    clientId: 'brooklet-tests',
    logLevel: logLevel.WARN,
    logCreator,
    connectionTimeout: 5000,
    requestTimeout: 10000,
  })
}

// A consumer in `group` subscribed to `topic` from the beginning. Short
// timeouts (kafkajs defaults to a 30 s session and a 60 s rebalance) and
// fetches that wait at most 100 ms, so heartbeats and rejoins come quickly.
async function consumer(kafka, topic, group) {
  const c = kafka.consumer({
    groupId: group,
    sessionTimeout: 6000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 200,
    maxWaitTimeInMs: 100,
  })
  await c.connect()
  await c.subscribe({ topics: [topic], fromBeginning: true })
  return c
}

async function waitFor(what, check) {
  const deadline = Date.now() + DEADLINE_MS - 3000
  for (;;) {
    const value = check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

async function produce(kafka, topic, values, partition = 0) {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  await producer.send({
    topic,
    acks: -1,
    timeout: 10000,
    messages: values.map(value => ({ value, partition })),
  })
  await producer.disconnect()
}

const show = got => got.map(m => `${m.offset}:${m.value}`).join(' ')

// The group's committed offset of each partition of `topic`, through
// kafkajs's admin client (OffsetFetch).
async function committed(kafka, topic, group) {
  const admin = kafka.admin()
  await admin.connect()
  const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  await admin.disconnect()
  return t.partitions.sort((a, b) => a.partition - b.partition).map(p => Number(p.offset))
}

// Waits until the group's committed offsets are `expected`: kafkajs's
// autoCommit commits after each batch it processed.
async function waitForCommitted(kafka, topic, group, expected) {
  const deadline = Date.now() + DEADLINE_MS - 3000
  for (;;) {
    const now = await committed(kafka, topic, group)
    if (JSON.stringify(now) === JSON.stringify(expected)) return
    if (Date.now() > deadline) throw new Error(`committed ${JSON.stringify(now)}, expected ${JSON.stringify(expected)}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function resume(addr, topic, group) {
  const kafka = client(addr)
  await produce(
    kafka,
    topic,
    Array.from({ length: 10 }, (_, i) => `a${i}`)
  )

  // First: eachMessage, kafkajs commits what was processed after each batch.
  let got = []
  const first = await consumer(kafka, topic, group)
  await first.run({
    eachMessage: async ({ message }) => {
      got.push({ offset: Number(message.offset), value: message.value.toString() })
    },
  })
  await waitFor('the first consumer to read 10 records', () => got.length >= 10)
  await waitForCommitted(kafka, topic, group, [10])
  await first.disconnect()
  console.log('first', show(got), 'committed', JSON.stringify(await committed(kafka, topic, group)))

  // Second: eachBatch without autoCommit, one explicit commit.
  await produce(
    kafka,
    topic,
    Array.from({ length: 5 }, (_, i) => `b${i}`)
  )
  got = []
  const second = await consumer(kafka, topic, group)
  await second.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) got.push({ offset: Number(m.offset), value: m.value.toString() })
    },
  })
  await waitFor('the second consumer to read 5 records', () => got.length >= 5)
  const next = got[got.length - 1].offset + 1
  await second.commitOffsets([{ topic, partition: 0, offset: String(next) }])
  console.log('second', show(got), 'committed', JSON.stringify(await committed(kafka, topic, group)))
  await second.disconnect()

  // Third: resumes at that commit and commits nothing.
  await produce(kafka, topic, ['c0'])
  got = []
  const third = await consumer(kafka, topic, group)
  await third.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      got.push({ offset: Number(message.offset), value: message.value.toString() })
    },
  })
  await waitFor('the third consumer to read 1 record', () => got.length >= 1)
  await third.disconnect()
  console.log('third', show(got))
}

// Reads `n` records of `topic` in `group` with eachMessage, committing as
// kafkajs's autoCommit does when `autoCommit`; then leaves the group.
async function readOnce(kafka, topic, group, n, autoCommit) {
  const got = []
  const c = await consumer(kafka, topic, group)
  await c.run({
    autoCommit,
    eachMessage: async ({ message }) => {
      got.push({ offset: Number(message.offset), value: message.value.toString() })
    },
  })
  await waitFor(`${n} records`, () => got.length >= n)
  if (autoCommit) await waitForCommitted(kafka, topic, group, [got[got.length - 1].offset + 1])
  await c.disconnect()
  return got
}

async function reset(addr, topic, group) {
  const kafka = client(addr)
  await produce(kafka, topic, ['r0', 'r1', 'r2'])
  console.log('read', show(await readOnce(kafka, topic, group, 3, true)))
  const admin = kafka.admin()
  await admin.connect()
  await admin.resetOffsets({ groupId: group, topic, earliest: true })
  console.log('earliest committed', JSON.stringify(await committed(kafka, topic, group)))
  console.log('again', show(await readOnce(kafka, topic, group, 3, false)))
  await admin.resetOffsets({ groupId: group, topic })
  console.log('latest committed', JSON.stringify(await committed(kafka, topic, group)))
  await admin.disconnect()
}

// One member of the group: its latest assignment and what it read.
class Member {
  constructor(kafka, topic, group) {
    this.kafka = kafka
    this.topic = topic
    this.group = group
    this.owned = null
    this.memberId = null
    this.values = []
  }

  async start() {
    this.consumer = await consumer(this.kafka, this.topic, this.group)
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      this.memberId = payload.memberId
      this.owned = (payload.memberAssignment[this.topic] || []).slice().sort()
    })
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      this.crashed = payload.error
    })
    await this.consumer.run({
      eachMessage: async ({ message }) => {
        this.values.push(message.value.toString())
      },
    })
  }

  check() {
    if (this.crashed) throw this.crashed
  }

  owns(n) {
    this.check()
    return this.owned !== null && this.owned.length === n
  }
}

async function split(addr, topic, group) {
  const kafka = client(addr)
  const a = new Member(kafka, topic, group)
  await a.start()
  await waitFor('a to own every partition', () => a.owns(4))

  // b joins a group that a owns whole: a gives up half.
  const b = new Member(kafka, topic, group)
  await b.start()
  await waitFor('a and b to own two partitions each', () => {
    b.check()
    return a.owns(2) && b.owns(2)
  })
  const disjoint = new Set([...a.owned, ...b.owned]).size === 4
  console.log('split', a.owned.length, b.owned.length, 'disjoint', disjoint)

  // The test looks at the group, then says go.
  const lines = readline.createInterface({ input: process.stdin })
  const go = await waitForLine(lines)
  if (go !== 'go') throw new Error(`expected go, read ${go}`)

  await b.consumer.disconnect()
  await waitFor('a to own every partition again', () => a.owns(4))
  console.log('after leave a owns', a.owned.length)
  for (let p = 0; p < 4; p++) await produce(kafka, topic, [`after-${group}-${p}`], p)
  const after = await waitFor('a to read the records produced after', () => {
    a.check()
    const got = a.values.filter(v => v.startsWith(`after-${group}-`)).sort()
    return got.length === 4 && got
  })
  console.log('a read', after.join(' '))
  await waitForCommitted(kafka, topic, group, [1, 1, 1, 1])
  await a.consumer.disconnect()
  lines.close()
  console.log('done')
}

function waitForLine(lines) {
  return new Promise((resolve, reject) => {
    lines.once('line', resolve)
    lines.once('close', () => reject(new Error('stdin closed before a line')))
  })
}

async function main(args) {
  const timer = setTimeout(() => {
    console.error(`no result within ${DEADLINE_MS} ms`)
    process.exit(1)
  }, DEADLINE_MS)
  const [mode, addr, topic, group] = args
  if (args.length === 4 && mode === 'resume') {
    await resume(addr, topic, group)
  } else if (args.length === 4 && mode === 'reset') {
    await reset(addr, topic, group)
  } else if (args.length === 4 && mode === 'split') {
    await split(addr, topic, group)
  } else {
    throw new Error('usage: kafkajs_groups.js resume|reset|split ADDR TOPIC GROUP')
  }
  clearTimeout(timer)
  if (logged.errors.length > 0) throw new Error(`kafkajs logged ${logged.errors.length} errors`)
}

main(process.argv.slice(2)).catch(e => {
  console.error(e)
  process.exit(1)
})
