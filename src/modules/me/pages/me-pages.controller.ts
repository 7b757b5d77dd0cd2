import { Controller, Get, Param, Req, Res } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HumanPrincipal } from '../../../common/auth/human.js';
import { RequestContext } from '../../../common/request-context.js';
import { PAGE_HEADERS } from '../../../web/html.js';
import { MeAgentsService } from '../dashboard/me-agents.service.js';
import { MeFactorsService } from '../dashboard/me-factors.service.js';
import { MeStepUpsService } from '../dashboard/me-step-ups.service.js';
import { MeService } from '../me.service.js';
import { HumanSessionsService } from '../session/human-sessions.service.js';
import { type DashboardData, dashboardPage, renderSection, SECTIONS, type SectionName } from './dashboard-page.js';

/** How many activity entries the dashboard shows. */
const ACTIVITY_SHOWN = 20;

/**
 * The dashboard page `GET /me` and its sections `GET /me/sections/:name` (the page's script
 * refreshes a section with the same server-side renderer). Without a session the page sends the
 * browser to `/me/login` and a section answers 401: the script then does the same.
 */
@ApiExcludeController()
@Controller('me')
export class MePagesController {
  private pushMounted: boolean | undefined;

  constructor(
    private readonly sessions: HumanSessionsService,
    private readonly me: MeService,
    private readonly stepUps: MeStepUpsService,
    private readonly agents: MeAgentsService,
    private readonly factors: MeFactorsService,
    private readonly adapter: HttpAdapterHost,
  ) {}

  @Get()
  async dashboard(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const human = await this.signedIn(req);
    if (!human) {
      reply.headers({ 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer' }).redirect('/me/login', 303);
      return;
    }
    const [me, stepUps, agents, grants, factors, activity] = await Promise.all([
      this.me.profile(human),
      this.stepUps.list(human, 'pending'),
      this.agents.list(human),
      this.agents.grants(human),
      this.factors.list(human),
      this.me.activity(human, { limit: ACTIVITY_SHOWN }),
    ]);
    const data: DashboardData = { me, stepUps: stepUps.stepUps, agents: agents.agents, grants, factors: factors.factors, activity: activity.events };
    reply.headers(PAGE_HEADERS).status(200).send(dashboardPage(data, { pushAvailable: this.pushAvailable() }));
  }

  @Get('sections/:name')
  async section(@Param('name') name: string, @Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    reply.headers(PAGE_HEADERS);
    if (!(SECTIONS as readonly string[]).includes(name)) {
      reply.status(404).send('');
      return;
    }
    const human = await this.signedIn(req);
    if (!human) {
      reply.status(401).send('');
      return;
    }
    reply.status(200).send(renderSection(name as SectionName, await this.sectionData(name as SectionName, human)));
  }

  private async sectionData(name: SectionName, human: HumanPrincipal): Promise<Partial<DashboardData>> {
    switch (name) {
      case 'approvals':
        return { stepUps: (await this.stepUps.list(human, 'pending')).stepUps };
      case 'agents':
        return { agents: (await this.agents.list(human)).agents };
      case 'grants': {
        const [agents, grants] = await Promise.all([this.agents.list(human), this.agents.grants(human)]);
        return { agents: agents.agents, grants };
      }
      case 'factors':
        return { factors: (await this.factors.list(human)).factors };
      case 'activity': {
        const [agents, activity] = await Promise.all([this.agents.list(human), this.me.activity(human, { limit: ACTIVITY_SHOWN })]);
        return { agents: agents.agents, activity: activity.events };
      }
    }
  }

  /** The session behind the cookie, with the request's audit context set as HumanSessionGuard does. */
  private async signedIn(req: FastifyRequest): Promise<HumanPrincipal | null> {
    const human = await this.sessions.authenticate(req.headers.cookie);
    if (human) RequestContext.assign({ appId: human.appId, actorType: 'user', actorId: human.userId, userId: human.userId });
    return human;
  }

  /** Whether the Web Push helper is served (issue 15's push module mounted): the page then offers the button. */
  private pushAvailable(): boolean {
    if (this.pushMounted === undefined) {
      const fastify = this.adapter.httpAdapter.getInstance<FastifyInstance>();
      this.pushMounted = fastify.hasRoute({ method: 'GET', url: '/me/push.js' });
    }
    return this.pushMounted;
  }
}
