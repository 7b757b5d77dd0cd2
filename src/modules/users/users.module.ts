import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { UserFactorsPort } from './user-factors.port.js';
import { UsersController } from './users.controller.js';
import { UsersRepository } from './users.repository.js';
import { UsersService } from './users.service.js';

@Module({
  imports: [AppsModule],
  controllers: [UsersController],
  providers: [UsersRepository, UsersService, UserFactorsPort],
  exports: [UsersService, UsersRepository, UserFactorsPort],
})
export class UsersModule {}
