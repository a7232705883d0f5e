import { Body, ConflictException, Controller, Get, Inject, Injectable, Module, NotFoundException, Param, Post } from '@nestjs/common';
import { InjectModel, SequelizeModule } from '@nestjs/sequelize';
import type { Session, SessionFactory } from '@sessionlocal/session-core';
import { Author, Book } from '../sequelize-typescript/models.js';
import { Db, SESSION_LOCAL } from './session-local.module.js';

export interface CreateAuthor {
  name: string;
  books?: string[];
  /** Throw a 409 after writing (to show the rollback). */
  conflict?: boolean;
}

/** What the service published after COMMIT (a stand-in for a message queue). */
export const published: string[] = [];

/** A Nest service as teams write it: models injected, no transaction passed anywhere. */
@Injectable()
export class LibraryService {
  constructor(
    @InjectModel(Author) private readonly authors: typeof Author,
    @Inject(SESSION_LOCAL) private readonly SessionLocal: SessionFactory,
  ) {}

  async create(input: CreateAuthor): Promise<{ id: number; session: number }> {
    const db = this.SessionLocal.current(); // the request's session, reached from a DI-built service
    const author = await this.authors.create({ name: input.name, books: (input.books ?? []).map((title) => ({ title })) }, { include: [Book] });
    db.afterCommit(() => void published.push(`author ${author.name}`));
    if (input.conflict) throw new ConflictException(`${input.name} conflicts`);
    return { id: author.id, session: db.id };
  }

  async show(id: string): Promise<{ name: string; books: string[] }> {
    const author = await this.authors.findByPk(id, { include: [Book] });
    if (!author) throw new NotFoundException();
    return { name: author.name, books: author.books!.map((b) => b.title) };
  }
}

@Controller('authors')
export class LibraryController {
  // injected by type: needs emitDecoratorMetadata (tsc, or vitest's transform with this package's tsconfig)
  constructor(private readonly library: LibraryService) {}

  @Post()
  async create(@Body() body: CreateAuthor, @Db() db: Session) {
    const result = await this.library.create(body);
    return { ...result, sameSession: result.session === db.id };
  }

  @Get(':id')
  show(@Param('id') id: string) {
    return this.library.show(id);
  }
}

@Module({ imports: [SequelizeModule.forFeature([Author, Book])], controllers: [LibraryController], providers: [LibraryService] })
export class LibraryModule {}
